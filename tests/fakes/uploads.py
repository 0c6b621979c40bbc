"""The fake Numerai's model uploads: the images and data versions an upload runs on
(`computePickleDockerImages`, `computePickleDataVersions`), the ids
`createComputePickleUpload` takes (unknown ones refused, none = Numerai's defaults), and each
upload's `validationStatus` / `triggerStatus` with its triggers' status texts, as
`account { models { computePickleUpload { ... } } }` answers them.

By default Numerai's 2026 images are listed (Python 3.10 to 3.13, 3.12 the default) and the
data versions v5.0 to v5.3 (v5.3 the default); an upload is "valid" at the first status
query. A test scripts the answers to come:

    fake_numerai.pickles.script(("pending", None), ("validating", "pending"),
                                ("invalid", "failed", "Segmentation fault! ..."))

Each `account` query after an upload answers the next step (the last one stays);
`fake_numerai.pickles.created` holds what each upload named."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakes.numerai_server import FakeNumerai

IMAGE_TAG = "a78dedd"


def _image(python: str, default: bool = False) -> dict[str, Any]:
    underscored = python.replace(".", "_")
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"image/{python}")),
            "name": f"Python {python}", "image": f"numerai_predict_py_{underscored}",
            "tag": IMAGE_TAG, "default": default, "deprecated": False, "experimental": False}


def _data_version(name: str, default: bool = False) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"data/{name}")), "name": name,
            "default": default, "deprecated": False, "experimental": False}


@dataclass
class Step:
    """One status answer: validationStatus, triggerStatus, the trigger's status text."""

    validation: str | None
    trigger: str | None = None
    description: str | None = None


@dataclass
class PickleUpload:
    """What createComputePickleUpload recorded, and where its status script stands."""

    id: str
    model_id: str
    filename: str
    docker_image_id: str
    data_version_id: str
    steps: list[Step]
    answered: int = 0
    inserted_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def answer(self) -> dict[str, Any]:
        """The upload as the next status query sees it (advancing the script)."""
        step = self.steps[min(self.answered, len(self.steps) - 1)]
        self.answered += 1
        statuses = [{"status": step.trigger or step.validation, "description": step.description,
                     "insertedAt": datetime.now(UTC).isoformat()}]
        return {"id": self.id, "filename": self.filename, "modelId": self.model_id,
                "validationStatus": step.validation, "triggerStatus": step.trigger,
                "dockerImageId": self.docker_image_id, "dataVersionId": self.data_version_id,
                "insertedAt": self.inserted_at,
                "triggers": [{"id": f"trigger-{self.id}", "status": step.trigger,
                              "statuses": statuses}]}


class PickleUploads:
    """The model-upload part of a FakeNumerai (its `pickles` attribute)."""

    def __init__(self, fake: FakeNumerai):
        self.fake = fake
        self.images = [_image("3.10"), _image("3.11"), _image("3.12", default=True),
                       _image("3.13")]
        self.data_versions = [_data_version("v5.0"), _data_version("v5.1"),
                              _data_version("v5.2"), _data_version("v5.3", default=True)]
        self.steps = [Step("valid", "pending")]
        self.created: dict[str, PickleUpload] = {}  # upload id -> record
        self.current: dict[str, str] = {}  # model id -> its latest upload id

    # -- setup -----------------------------------------------------------------------

    def script(self, *steps: tuple[str | None, ...]) -> None:
        """The status answers of the uploads to come: (validationStatus[, triggerStatus[,
        description]]) per status query."""
        self.steps = [Step(*step) for step in steps]

    def list_images(self, *pythons: str, default: str | None = None) -> None:
        """Numerai lists images for these Python versions only."""
        self.images = [_image(p, default=p == default) for p in pythons]

    def list_data_versions(self, *names: str) -> None:
        self.data_versions = [_data_version(n, default=n == names[-1]) for n in names]

    def image_id(self, python: str) -> str:
        return next(i["id"] for i in self.images if i["name"] == f"Python {python}")

    def data_version_id(self, name: str) -> str:
        return next(v["id"] for v in self.data_versions if v["name"] == name)

    # -- GraphQL (called by FakeNumerai under its lock) ----------------------------

    def _op_computePickleDockerImages(self, variables: Mapping[str, Any]) -> list[dict]:
        return [dict(i) for i in self.images]

    def _op_computePickleDataVersions(self, variables: Mapping[str, Any]) -> list[dict]:
        return [dict(v) for v in self.data_versions]

    def create(self, upload_id: str, model_id: str, filename: str,
               variables: Mapping[str, Any]) -> None:
        """Record an upload (after the ids are checked by `check`)."""
        image_id, data_id = self.check(variables)
        self.created[upload_id] = PickleUpload(upload_id, model_id, filename, image_id,
                                               data_id, list(self.steps))
        self.current[model_id] = upload_id

    def check(self, variables: Mapping[str, Any]) -> tuple[str, str]:
        """The image and data version ids an upload names (None: Numerai's defaults);
        GraphQLFailure for an id Numerai does not list."""
        from fakes.numerai_server import GraphQLFailure

        image_id = variables.get("dockerImageId")
        data_id = variables.get("dataVersionId")
        if image_id is None:
            image_id = next(i["id"] for i in self.images if i["default"])
        elif image_id not in {i["id"] for i in self.images}:
            raise GraphQLFailure(f"Invalid docker image id: {image_id}")
        if data_id is None:
            data_id = next(v["id"] for v in self.data_versions if v["default"])
        elif data_id not in {v["id"] for v in self.data_versions}:
            raise GraphQLFailure(f"Invalid data version id: {data_id}")
        return image_id, data_id

    def upload_of(self, model_id: str) -> dict[str, Any] | None:
        """The model's computePickleUpload as an account query answers it now."""
        upload_id = self.current.get(model_id)
        return self.created[upload_id].answer() if upload_id else None
