"""Model uploads against the fake Numerai: the images and data versions Numerai lists, the
ids createComputePickleUpload takes, and polling the upload's validation
(numerlab.tournament.model_uploads, TournamentClient.upload_model)."""

from __future__ import annotations

import pytest
from fakes.numerai_server import PUBLIC_ID, SECRET_KEY
from omegaconf import OmegaConf

from numerlab.errors import NumerlabError
from numerlab.tournament import NumeraiApiError, TournamentClient
from numerlab.tournament import model_uploads as mu
from numerlab.tournament.model_uploads import DataVersion, DockerImage

pytest_plugins = ["fakes.numerai_server"]

SEGFAULT = "Segmentation fault! Ensure python and library versions match our environment."


@pytest.fixture
def client(fake_numerai) -> TournamentClient:
    from conftest import CONF_DIR

    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "tournament" / "default.yaml"))
    cfg.update({"api_url": fake_numerai.url, "timeout_s": 2, "backoff_s": 0.001})
    return TournamentClient.from_config(cfg, environ={"NUMERAI_PUBLIC_ID": PUBLIC_ID,
                                                      "NUMERAI_SECRET_KEY": SECRET_KEY},
                                        sleep=lambda seconds: None)


def pickle_file(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x05 a pickled predict function")
    return path


# -- the lists ------------------------------------------------------------------------------


def test_images_and_data_versions_as_numerai_lists_them(fake_numerai, client):
    images = mu.docker_images(client)
    assert [(i.name, i.image, i.python, i.default) for i in images] == [
        ("Python 3.10", "numerai_predict_py_3_10", "3.10", False),
        ("Python 3.11", "numerai_predict_py_3_11", "3.11", False),
        ("Python 3.12", "numerai_predict_py_3_12", "3.12", True),
        ("Python 3.13", "numerai_predict_py_3_13", "3.13", False)]
    assert [v.name for v in mu.data_versions(client)] == ["v5.0", "v5.1", "v5.2", "v5.3"]
    # sent with the API key, as numerapi sends them
    assert fake_numerai.state.requests[-1].headers["Authorization"] == (
        f"Token {PUBLIC_ID}${SECRET_KEY}")


@pytest.mark.parametrize(("name", "image", "python"), [
    ("Python 3.9", None, "3.9"), ("", "numerai_predict_py_3_13", "3.13"),
    ("numerai_predict_py_3_12", None, "3.12"), ("Python 3.10 (experimental)", None, "3.10"),
    ("stable", "ghcr.io/numerai/shell", None),
])
def test_an_images_python_comes_from_its_name_or_image(name, image, python):
    assert DockerImage("id", name, image).python == python


def test_the_image_for_a_python_is_the_one_numerai_lists_for_it():
    images = [DockerImage("a", "Python 3.11"), DockerImage("b", "Python 3.12", default=True),
              DockerImage("c", "Python 3.12 (new tag)")]
    assert mu.image_for_python(images, "3.11").id == "a"
    assert mu.image_for_python(images, "3.12").id == "b"  # the default among several
    with pytest.raises(NumerlabError) as err:
        mu.image_for_python(images, "3.14")
    assert str(err.value) == (
        "Numerai runs model uploads on Python 3.11, 3.12 (default 3.12), not on 3.14, the "
        "Python exporting: a pickle loads only under the minor version that wrote it; export "
        "from a Python 3.12 environment")


def test_the_data_version_is_the_runs_or_the_newest_listed():
    versions = [DataVersion("a", "v5.0"), DataVersion("c", "v5.10"), DataVersion("b", "v5.2")]
    assert mu.data_version_named(versions, "v5.2").id == "b"
    assert mu.data_version_named(versions, None).id == "c"  # v5.10 is newer than v5.2
    with pytest.raises(NumerlabError, match=r"^Numerai runs model uploads on data versions "
                                            r"v5.0, v5.2, v5.10, not on v4.3, the run's"):
        mu.data_version_named(versions, "v4.3")


# -- the upload -----------------------------------------------------------------------------


def test_an_upload_names_its_image_and_data_version_by_id(fake_numerai, client, tmp_path):
    fake_numerai.add_model("alpha_model")
    image, data = fake_numerai.pickles.image_id("3.11"), fake_numerai.pickles.data_version_id(
        "v5.2")
    upload_id = client.upload_model(pickle_file(tmp_path), "alpha_model", data, image)
    created = fake_numerai.pickles.created[upload_id]
    assert (created.docker_image_id, created.data_version_id) == (image, data)
    [request] = [r for r in fake_numerai.state.requests
                 if r.operation == "createComputePickleUpload"]
    assert (request.variables["dockerImageId"], request.variables["dataVersionId"]) == (
        image, data)

    # none named: Numerai's defaults (the issue numerapi #117 ran into: 3.12, not yours)
    other = client.upload_model(pickle_file(tmp_path), "alpha_model")
    assert fake_numerai.pickles.created[other].docker_image_id == (
        fake_numerai.pickles.image_id("3.12"))


def test_an_unlisted_image_id_is_refused(fake_numerai, client, tmp_path):
    fake_numerai.add_model("alpha_model")
    with pytest.raises(NumeraiApiError, match=r"createComputePickleUpload: Invalid docker "
                                              r"image id: nope"):
        client.upload_model(pickle_file(tmp_path), "alpha_model", None, "nope")
    assert fake_numerai.state.model_uploads == []


# -- its validation -------------------------------------------------------------------------


def uploaded(fake_numerai, client, tmp_path) -> tuple[str, str]:
    model_id = fake_numerai.add_model("alpha_model")
    return model_id, client.upload_model(pickle_file(tmp_path), "alpha_model")


def test_validation_is_polled_until_numerai_decides(fake_numerai, client, tmp_path):
    fake_numerai.pickles.script(("pending", None), ("validating", "pending"),
                                ("valid", "success", "Submission successful"))
    model_id, upload_id = uploaded(fake_numerai, client, tmp_path)
    slept = []
    status = mu.wait_for_validation(client, model_id, upload_id, max_polls=10, poll_s=7,
                                    timeout_s=100, sleep=slept.append)
    assert (status.state, status.validation, status.trigger, status.description,
            status.polls) == ("valid", "valid", "success", "Submission successful", 3)
    assert slept == [7, 7]


def test_a_refused_upload_reports_numerais_words(fake_numerai, client, tmp_path):
    fake_numerai.pickles.script(("pending", None), ("invalid", "failed", SEGFAULT))
    model_id, upload_id = uploaded(fake_numerai, client, tmp_path)
    status = mu.wait_for_validation(client, model_id, upload_id, max_polls=5, poll_s=0,
                                    timeout_s=10)
    assert (status.state, status.validation, status.description) == (
        "invalid", "invalid", SEGFAULT)
    assert status.record()["description"] == SEGFAULT


@pytest.mark.parametrize(("max_polls", "timeout_s", "polls"), [(3, 100, 3), (10, 15, 2)])
def test_polling_stops_at_its_bounds_undecided(fake_numerai, client, tmp_path, max_polls,
                                               timeout_s, polls):
    fake_numerai.pickles.script(("pending", None))
    model_id, upload_id = uploaded(fake_numerai, client, tmp_path)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    status = mu.wait_for_validation(client, model_id, upload_id, max_polls=max_polls,
                                    poll_s=10, timeout_s=timeout_s, sleep=sleep,
                                    clock=lambda: now[0])
    assert (status.state, status.polls) == ("pending", polls)


def test_a_model_still_showing_an_earlier_upload_is_pending(fake_numerai, client, tmp_path):
    model_id, first = uploaded(fake_numerai, client, tmp_path)
    assert mu.upload_status(client, model_id, "a-newer-upload").state == "pending"
    assert mu.upload_status(client, model_id, first).state == "valid"
    with pytest.raises(NumeraiApiError, match=r"model nope is not among the account's"):
        mu.upload_status(client, "nope", first)
