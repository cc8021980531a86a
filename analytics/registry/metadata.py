"""Model metadata stored beside each artifact (``metadata.json``), and the compatibility check.

A model is usable only where the libraries that pickled it have the same versions (numpy and
scikit-learn to the minor version, joblib to the major) and only on the features it was trained
on, in the same order. :func:`check_compatible` raises ``ModelMismatch`` listing every difference
(:func:`compatibility_problems` lists them).

Keys this version does not know are kept, not refused, when ``metadata.json`` is read (a newer
zhizao's metadata can be listed and shown by an older one); :func:`unknown_keys` names them, and
loading the model refuses them (:meth:`~analytics.registry.store.ModelRegistry.verify`): this
version cannot vouch for what they say about the artifact.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from analytics.errors import ModelMismatch

# package -> number of version components that must match
CHECKED_LIBRARIES: dict[str, int] = {"numpy": 2, "scikit-learn": 2, "joblib": 1}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter for loading an artifact, plus Python and zhizao."""
    out = {"python": platform.python_version()}
    for name in [*CHECKED_LIBRARIES, "zhizao"]:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


class TrainingWindow(BaseModel):
    model_config = ConfigDict(extra="allow")
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    rows: int = 0


class ModelMetadata(BaseModel):
    """Everything needed to trust (or refuse) an artifact without unpickling it."""

    model_config = ConfigDict(extra="allow")
    scope: str
    version: str
    created: AwareDatetime
    detector: str
    spec: dict[str, Any]
    columns: list[str]
    features: list[str]
    threshold: float
    training: TrainingWindow = Field(default_factory=TrainingWindow)
    libraries: dict[str, str] = Field(default_factory=library_versions)
    validation: dict[str, float] = Field(default_factory=dict)
    sha256: str = ""
    notes: str = ""


def _prefix(v: str, n: int) -> str:
    return ".".join(v.split(".")[:n])


def unknown_keys(meta: ModelMetadata) -> list[str]:
    """The keys of ``metadata.json`` this version does not know (``training.<key>`` for the window's)."""
    return [*(meta.model_extra or {}), *(f"training.{k}" for k in meta.training.model_extra or {})]


def compatibility_problems(meta: ModelMetadata, features: list[str] | None = None,
                           installed: dict[str, str] | None = None) -> list[str]:
    """Each library-version difference (and, given ``features``, the feature difference) in words."""
    have = installed if installed is not None else library_versions()
    problems = []
    for lib, parts in CHECKED_LIBRARIES.items():
        want = meta.libraries.get(lib, "unknown")
        got = have.get(lib, "not installed")
        if _prefix(want, parts) != _prefix(got, parts):
            problems.append(f"{lib} {want} was used to train it, {got} is installed "
                            f"(must match to {parts} version part(s))")
    return problems + (feature_problems(meta, features) if features is not None else [])


def feature_problems(meta: ModelMetadata, features: list[str]) -> list[str]:
    """The difference between the ``features`` expected and the model's training features, if any."""
    if list(features) == list(meta.features):
        return []
    missing = [f for f in meta.features if f not in features]
    extra = [f for f in features if f not in meta.features]
    detail = (f"missing {missing}, unexpected {extra}" if missing or extra
              else "same features, different order")
    return [f"features differ from the training features: {detail}"]


def check_compatible(meta: ModelMetadata, features: list[str] | None = None,
                     installed: dict[str, str] | None = None) -> None:
    """``ModelMismatch`` naming each library-version or feature difference; ``None`` if usable."""
    problems = compatibility_problems(meta, features, installed)
    if problems:
        raise ModelMismatch(f"model {meta.scope} {meta.version} cannot be used here: " + "; ".join(problems)
                            + ". Retrain it with `zhizao analytics train`.")


def now() -> datetime:
    return datetime.now(UTC)
