"""A versioned model registry on the filesystem: joblib artifact + ``metadata.json`` per version.

Layout::

    <root>/<scope with "/" as "__">/v0001/model.joblib
                                    /v0001/metadata.json
                                    /active.json      {"active": "v0002", "history": ["v0001", "v0002"]}

``save`` writes a new version (not active until promoted, except the first one); ``promote``
makes a version active and remembers the previous one; ``rollback`` re-activates the previous.
Writes go to a temp file then ``os.replace`` so a crash never leaves a half-written file.
``load`` verifies the artifact's SHA-256 and :func:`check_compatible` *before* unpickling it
(joblib unpickles code: only load registries you trust).

Trust: the SHA-256 in ``metadata.json`` sits beside the artifact, so it detects corruption, not
tampering — whoever can write the registry can run code in every process that loads from it
(the scoring service, ``zhizao demo``, ``zhizao check``). Keep it writable by the
trainer only (analytics/README.md, "Model registry: trust"). Names read from the registry's own
files (``active.json``'s versions) are checked to be versions before they become paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import joblib

from analytics.errors import ModelMismatch, RegistryError
from analytics.registry.metadata import ModelMetadata, check_compatible, now
from analytics.scoring.model import AnomalyModel
from zhizao.model import valid_segment

_VERSION_RE = re.compile(r"v[0-9]{4,}")


_MODEL_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _slug(scope: str) -> str:
    s = scope.strip("/")
    path, hash_, model = s.partition("#")  # "<asset>#<model>": a machine's model other than health
    if (not path or not all(valid_segment(level) and level != ".." for level in path.split("/"))
            or (hash_ and not _MODEL_RE.fullmatch(model))):
        raise RegistryError(f"invalid scope {scope!r}: levels of letters, digits, '_', '.', '-' "
                            "separated by '/', optionally '#' and a model name")
    return s.replace("/", "__")


def _version(text: object, where: str) -> str:
    """``text`` if it is a version name (``v0001``); a :class:`RegistryError` naming ``where``."""
    if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
        raise RegistryError(f"{where}: {text!r} is not a model version (v0001, v0002, …)")
    return text


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ModelRegistry:
    """See module docstring. Not safe for concurrent writers to the same scope."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, scope: str) -> Path:
        return self.root / _slug(scope)

    def scopes(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name.replace("__", "/") for p in self.root.iterdir() if (p / "active.json").exists()
                      or any(p.glob("v*/metadata.json")))

    def versions(self, scope: str) -> list[str]:
        d = self._dir(scope)
        return sorted(p.parent.name for p in d.glob("v*/metadata.json"))

    def _pointer(self, scope: str) -> dict[str, Any]:
        p = self._dir(scope) / "active.json"
        if not p.exists():
            return {"active": None, "history": []}
        try:
            doc = json.loads(p.read_text())
        except (ValueError, OSError) as exc:
            raise RegistryError(f"{p}: cannot read the active-version pointer ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("history", []), list):
            raise RegistryError(f"{p}: expected {{\"active\": \"v0001\", \"history\": [...]}}")
        if doc.get("active") is not None:
            _version(doc["active"], f"{p} active")
        for v in doc.get("history", []):
            _version(v, f"{p} history")
        return doc

    def _set_pointer(self, scope: str, active: str, history: list[str]) -> None:
        doc = {"active": active, "history": history}
        _write_atomic(self._dir(scope) / "active.json", json.dumps(doc).encode())

    def active(self, scope: str) -> str | None:
        v = self._pointer(scope).get("active")
        return str(v) if v else None

    def metadata(self, scope: str, version: str | None = None) -> ModelMetadata:
        v = version or self.active(scope)
        if v is not None:
            _version(v, f"scope {scope!r}")
        if v is None:
            raise RegistryError(f"scope {scope!r} has no active model (versions: {self.versions(scope)})")
        p = self._dir(scope) / v / "metadata.json"
        if not p.exists():
            raise RegistryError(f"scope {scope!r} has no version {v!r} (versions: {self.versions(scope)})")
        return ModelMetadata.model_validate_json(p.read_text())

    def save(self, scope: str, model: AnomalyModel, *, validation: dict[str, float] | None = None,
             training: dict[str, Any] | None = None, notes: str = "") -> ModelMetadata:
        """Store ``model`` as the next version of ``scope``; the first version becomes active."""
        d = self._dir(scope)
        existing = self.versions(scope)
        ver = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
        vd = d / ver
        vd.mkdir(parents=True, exist_ok=False)
        art = vd / "model.joblib"
        joblib.dump(model, art)
        meta = ModelMetadata(scope=scope, version=ver, created=now(), detector=model.spec.detector,
                             spec=model.spec.model_dump(), columns=model.columns,
                             features=model.feature_names(), threshold=model.threshold,
                             training=training or {"rows": model.n_train}, validation=validation or {},
                             sha256=hashlib.sha256(art.read_bytes()).hexdigest(), notes=notes)
        _write_atomic(vd / "metadata.json", meta.model_dump_json(indent=2).encode())
        if not existing:
            self.promote(scope, ver)
        return meta

    def load(self, scope: str, version: str | None = None, features: list[str] | None = None) -> AnomalyModel:
        """The model (active one by default), after integrity and compatibility checks."""
        meta = self.metadata(scope, version)
        check_compatible(meta, features)
        art = self._dir(scope) / meta.version / "model.joblib"
        if hashlib.sha256(art.read_bytes()).hexdigest() != meta.sha256:
            raise ModelMismatch(f"model {scope} {meta.version}: artifact does not match its recorded SHA-256")
        model = joblib.load(art)
        if not isinstance(model, AnomalyModel):
            raise ModelMismatch(f"model {scope} {meta.version}: artifact is a {type(model).__name__}")
        return model

    def promote(self, scope: str, version: str) -> None:
        if version not in self.versions(scope):
            raise RegistryError(f"scope {scope!r} has no version {version!r} "
                                f"(versions: {self.versions(scope)})")
        ptr = self._pointer(scope)
        history = [v for v in ptr.get("history", []) if v != version] + [version]
        self._set_pointer(scope, version, history)

    def rollback(self, scope: str) -> str:
        """Re-activate the previously active version; returns it."""
        ptr = self._pointer(scope)
        history = list(ptr.get("history", []))
        if len(history) < 2:
            raise RegistryError(f"scope {scope!r}: nothing to roll back to (history {history})")
        history.pop()
        prev = history[-1]
        self._set_pointer(scope, prev, history)
        return str(prev)
