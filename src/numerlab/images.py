"""The numerai-predict image a model upload runs in, against the environment that exports it.

Numerai unpickles the upload in an image of one Python minor version (numerai-predict
`py3.10` ... `py3.13`) holding fixed versions of numpy, pandas, cloudpickle and the model
libraries. conf/export/images.yaml holds those versions per image, dated; here they are
read (`image_pins`), the versions this interpreter builds the pickle with are taken
(`built_with`), and the differences that can break the upload are named
(`mismatches`), one line each:

- the model library's major.minor (LightGBM's model text, XGBoost's UBJSON and torch's
  state dict are read by the image's version: formats and predictions change with minors);
- cloudpickle's major.minor (the pickle refers to cloudpickle's own helpers by name);
- numpy's major (numpy 2 and numpy 1 differ in their C ABI and pickled arrays).

Other differences (pandas, a numpy minor) are recorded, not warned about: the pickle stores
no numpy or pandas object (`numerlab.export`), only code that runs on the image's versions.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from numerlab.errors import NumerlabError, message_line

PINS_FILE = Path("export") / "images.yaml"  # under conf/
ALWAYS = ("numpy", "pandas", "cloudpickle")  # what every numerlab pickle runs on
MODEL_LIBRARIES = ("lightgbm", "xgboost", "torch")


@dataclass(frozen=True)
class ImagePins:
    """One image's package versions: `python` "3.11", `image` "numerai_predict_py_3_11",
    `read` the date they were read, `source` where from, `pins` distribution -> version."""

    python: str
    image: str
    read: str
    source: str
    pins: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.image} (pins read {self.read})"


def pins_path(path: str | Path | None = None) -> Path:
    """`path`, or conf/export/images.yaml."""
    from numerlab.registry import CONF_DIR

    return Path(path).expanduser() if path else CONF_DIR / PINS_FILE


def image_pins(path: str | Path | None = None) -> dict[str, ImagePins]:
    """Python minor version -> its image's pins, from the pins file (default
    conf/export/images.yaml); a one-line error names what is wrong in it."""
    import yaml

    path = pins_path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise NumerlabError(f"cannot read the image pins {path}: {message_line(exc)}") from None
    images = document.get("images") if isinstance(document, dict) else None
    if not isinstance(images, dict) or not images:
        raise NumerlabError(f"{path}: holds no `images:` mapping of Python version -> pins")
    out = {}
    for python, entry in images.items():
        where = f"{path}: images.{python}"
        if not re.fullmatch(r"\d+\.\d+", str(python)) or not isinstance(entry, dict):
            raise NumerlabError(f"{where}: must be a Python minor version such as \"3.11\" "
                                f"mapping to image, read, source and pins")
        pins = entry.get("pins")
        if not isinstance(pins, dict) or not pins:
            raise NumerlabError(f"{where}.pins: must map package names to versions")
        for name, version in pins.items():
            if not isinstance(version, str) or not version.strip():
                raise NumerlabError(f"{where}.pins.{name}={version!r}: write the version as a "
                                    f"quoted string")
        missing = [key for key in ("image", "read", "source") if not entry.get(key)]
        if missing:
            raise NumerlabError(f"{where}.{missing[0]} is missing")
        out[str(python)] = ImagePins(str(python), str(entry["image"]), str(entry["read"]),
                                     str(entry["source"]),
                                     {str(k).lower(): v.strip() for k, v in pins.items()})
    return out


def python_minor(version_info: Any = None) -> str:
    """This interpreter's minor version, "3.11": the image a pickle of it needs."""
    info = version_info or sys.version_info
    return f"{info[0]}.{info[1]}"


def built_with(libraries: Iterable[str]) -> dict[str, str]:
    """The versions this interpreter builds a pickle with: python, numpy, pandas,
    cloudpickle and the model `libraries` it uses (distribution names)."""
    versions = {"python": platform.python_version()}
    for name in (*ALWAYS, *libraries):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _release(version: str, parts: int) -> tuple[int, ...] | None:
    """The first `parts` numbers of a version ("2.7.1+cpu" -> (2, 7)); None if it has
    fewer."""
    numbers = re.match(r"(\d+(?:\.\d+)*)", version.strip())
    if not numbers:
        return None
    release = tuple(int(n) for n in numbers.group(1).split("."))
    return release[:parts] if len(release) >= parts else None


# why a difference of these matters (a model library: it reads the model the pickle holds)
_WHY = {"cloudpickle": "the pickle calls cloudpickle's helpers by name",
        "numpy": "numpy's C ABI and array pickles differ between majors"}


def mismatches(built: Mapping[str, str], pins: ImagePins, libraries: Iterable[str]
               ) -> list[str]:
    """One line per difference between `built` (`built_with`) and the image's pins that
    can break the upload: each model library's major.minor, cloudpickle's major.minor,
    numpy's major; a model library the image does not pin."""
    checks = [(name, 2, f"{name} reads the model the pickle holds") for name in libraries]
    checks += [("cloudpickle", 2, _WHY["cloudpickle"]), ("numpy", 1, _WHY["numpy"])]
    lines = []
    for name, parts, why in checks:
        here = built.get(name, "not installed")
        there = pins.pins.get(name)
        if there is None:
            lines.append(f"{name} {here} here, but {pins.label} pins no {name}: the upload "
                         f"cannot import it")
            continue
        if _release(here, parts) != _release(there, parts):
            what = "major.minor" if parts == 2 else "major"
            lines.append(f"{name} {here} here, {there} in {pins.label}: the {what} differs "
                         f"({why})")
    return lines
