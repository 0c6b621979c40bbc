"""Where a model upload runs and what Numerai made of it: the images
(`computePickleDockerImages`: one numerai-predict image per Python minor version) and data
versions (`computePickleDataVersions`) that `createComputePickleUpload` takes by id, and the
upload's `validationStatus` / `triggerStatus` under `account { models { computePickleUpload
} }`.

numerapi 3.1.1 lists images and data versions as name -> id only
(`model_upload_docker_images`, `model_upload_data_versions`) and has no status call; the
same queries here also ask for the fields that say which Python an image runs and which is
Numerai's default, and the status query asks for the latest trigger's status texts (the
server's own words on a failure, e.g. "Segmentation fault! Ensure python and library
versions match our environment.")."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from numerlab.errors import NumerlabError
from numerlab.tournament.client import _version_key
from numerlab.tournament.transport import NumeraiApiError

if TYPE_CHECKING:
    from numerlab.tournament.client import TournamentClient

log = logging.getLogger(__name__)

DOCKER_IMAGES_QUERY = """
query {
  computePickleDockerImages {
    id
    name
    image
    tag
    default
  }
}"""
DATA_VERSIONS_QUERY = """
query {
  computePickleDataVersions {
    id
    name
  }
}"""
UPLOAD_STATUS_QUERY = """
query {
  account {
    models {
      id
      name
      computePickleUpload {
        id
        filename
        validationStatus
        triggerStatus
        triggers {
          status
          statuses {
            status
            description
            insertedAt
          }
        }
      }
    }
  }
}"""

# validationStatus words (compared lowercased); anything else means "not decided yet"
VALID = frozenset({"valid", "validated", "success", "succeeded", "passed"})
INVALID = frozenset({"invalid", "failed", "failure", "error", "errored", "rejected"})

_PYTHON = re.compile(r"py(?:thon)?[\s_-]*(\d+)[._](\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class DockerImage:
    """One image Numerai runs uploads in: its id, name ("Python 3.12"), image
    ("numerai_predict_py_3_12"), tag and whether it is Numerai's default."""

    id: str
    name: str
    image: str | None = None
    tag: str | None = None
    default: bool = False

    @property
    def python(self) -> str | None:
        """The Python minor version it runs ("3.12"), from its name or image name."""
        for text in (self.name, self.image or ""):
            match = _PYTHON.search(text)
            if match:
                return f"{int(match.group(1))}.{int(match.group(2))}"
        return None

    @property
    def label(self) -> str:
        return f"{self.image or self.name}{':' + self.tag if self.tag else ''}"


@dataclass(frozen=True)
class DataVersion:
    id: str
    name: str  # "v5.2"


@dataclass(frozen=True)
class UploadStatus:
    """An upload as Numerai reports it: `state` is "valid", "invalid" or "pending" (not
    decided yet, or the model still shows an earlier upload); `description` is the latest
    status text of its latest trigger, where there is one."""

    upload_id: str
    state: str
    validation: str | None = None
    trigger: str | None = None
    description: str | None = None
    polls: int = 0
    waited_s: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"state": self.state, "validation_status": self.validation,
                "trigger_status": self.trigger, "description": self.description,
                "polls": self.polls, "waited_s": round(self.waited_s, 1)}


def _items(answer: dict, field: str) -> list[dict]:
    items = answer["data"].get(field)
    if not isinstance(items, list):
        raise NumeraiApiError(f"Numerai API {field}: no list in the answer")
    return [item for item in items if isinstance(item, dict) and item.get("id")]


def docker_images(client: TournamentClient) -> list[DockerImage]:
    """The images Numerai runs model uploads in now (deprecated ones are not listed)."""
    answer = client.graphql(DOCKER_IMAGES_QUERY, authorization=True)
    return [DockerImage(str(i["id"]), str(i.get("name") or ""), i.get("image"), i.get("tag"),
                        bool(i.get("default")))
            for i in _items(answer, "computePickleDockerImages")]


def data_versions(client: TournamentClient) -> list[DataVersion]:
    """The data versions a model upload can be run on."""
    answer = client.graphql(DATA_VERSIONS_QUERY, authorization=True)
    return [DataVersion(str(v["id"]), str(v.get("name") or ""))
            for v in _items(answer, "computePickleDataVersions")]


def image_for_python(images: Sequence[DockerImage], python: str) -> DockerImage:
    """The image that runs Python `python` ("3.11"): Numerai's default among several.
    A pickle holds code objects, which load only under the minor version that wrote them,
    so there is no other choice; none is a one-line refusal."""
    matching = [image for image in images if image.python == python]
    if not matching:
        pythons = sorted({i.python for i in images if i.python}, key=_version_key)
        default = next((i.python for i in images if i.default and i.python), None)
        hint = f" (default {default})" if default else ""
        suggest = default or (pythons[-1] if pythons else "3.x")
        raise NumerlabError(
            f"Numerai runs model uploads on Python {', '.join(pythons) or 'none'}{hint}, not "
            f"on {python}, the Python exporting: a pickle loads only under the minor version "
            f"that wrote it; export from a Python {suggest} environment")
    return max(matching, key=lambda image: image.default)


def data_version_named(versions: Sequence[DataVersion], name: str | None
                       ) -> DataVersion:
    """The listed data version `name` ("v5.2"); None: the newest listed."""
    if not versions:
        raise NumeraiApiError("Numerai API computePickleDataVersions: lists no data version")
    if name is None:
        return max(versions, key=lambda v: _version_key(v.name))
    for version in versions:
        if version.name == name:
            return version
    listed = ", ".join(sorted((v.name for v in versions), key=_version_key))
    raise NumerlabError(f"Numerai runs model uploads on data versions {listed}, not on {name}, "
                        f"the run's: retrain on a listed version (data.version=...)")


def upload_status(client: TournamentClient, model_id: str, upload_id: str) -> UploadStatus:
    """What Numerai reports now about upload `upload_id` of model `model_id`."""
    answer = client.graphql(UPLOAD_STATUS_QUERY, authorization=True)
    account = answer["data"].get("account")
    models = account.get("models") if isinstance(account, dict) else None
    model = next((m for m in models or [] if isinstance(m, dict) and str(m.get("id"))
                  == model_id), None)
    if model is None:
        raise NumeraiApiError(f"Numerai API account: model {model_id} is not among the "
                              f"account's models")
    upload = model.get("computePickleUpload")
    if not isinstance(upload, dict) or str(upload.get("id")) != upload_id:
        return UploadStatus(upload_id, "pending")  # the model still shows an earlier upload
    validation = upload.get("validationStatus")
    word = str(validation or "").strip().lower()
    state = "valid" if word in VALID else "invalid" if word in INVALID else "pending"
    return UploadStatus(upload_id, state, validation, upload.get("triggerStatus"),
                        _latest_description(upload.get("triggers")))


def _latest_description(triggers: Any) -> str | None:
    """The text of the latest status (by insertedAt, else list order) of the latest
    trigger that has one."""
    for trigger in reversed(triggers if isinstance(triggers, list) else []):
        statuses = [s for s in (trigger or {}).get("statuses") or []
                    if isinstance(s, dict) and s.get("description")]
        if statuses:
            latest = max(enumerate(statuses),
                         key=lambda item: (str(item[1].get("insertedAt") or ""), item[0]))
            return " ".join(str(latest[1]["description"]).split())
    return None


def wait_for_validation(client: TournamentClient, model_id: str, upload_id: str, *,
                        max_polls: int, poll_s: float, timeout_s: float,
                        sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> UploadStatus:
    """Poll `upload_status` until Numerai decides (valid or invalid), at most `max_polls`
    times and `timeout_s` seconds, `poll_s` apart; the last status (pending when
    undecided)."""
    start = clock()
    status = UploadStatus(upload_id, "pending")
    for poll in range(1, max_polls + 1):
        status = upload_status(client, model_id, upload_id)
        waited = clock() - start
        status = replace(status, polls=poll, waited_s=waited)
        log.info("model upload %s: validationStatus %s, triggerStatus %s", upload_id,
                 status.validation, status.trigger)
        if status.state != "pending" or poll == max_polls or waited + poll_s > timeout_s:
            return status
        sleep(poll_s)
    return status
