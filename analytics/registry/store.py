"""A versioned model registry on the filesystem: joblib artifact + ``metadata.json`` per version.

Layout::

    <root>/<scope with "/" as "__">/v0001/model.joblib
                                    /v0001/metadata.json
                                    /active.json      {"active": "v0002", "history": ["v0001", "v0002"]}

The folder name alone does not give the scope back (a level may itself hold ``__``:
``press__1``), so :meth:`~ModelRegistry.scopes` reads it from the versions' ``metadata.json``
(the one whose folder name it is); ``save`` refuses a scope whose folder already holds another
scope's models (``a__b/c`` and ``a/b/c``).

``save`` writes a new version (not active until promoted, except the first one, unless the caller
decides: ``activate``); ``promote`` makes a version active and remembers the previous one;
``rollback`` re-activates the previous. Writes go to a temp file then ``os.replace`` so a crash
never leaves a half-written file.

Checks (:class:`UnusableModel`, one message naming every difference). :meth:`~ModelRegistry.verify`
runs those that need no unpickling: ``metadata.json`` is readable (:class:`UnreadableMetadata`
otherwise) and holds no key this version does not know, it names the scope and version of the
folder it was read from (a version folder copied from another machine's scope, or renumbered, is
refused as such), the library versions match (:func:`~analytics.registry.metadata.compatibility_problems`),
and ``model.joblib`` has the recorded SHA-256. :meth:`~ModelRegistry.load` then unpickles it and
checks that the metadata describes the artifact — the columns, features and detector the
pickled model was fitted with — and, given them, the caller's expectations: the exact ``features``,
or the ``signals`` the caller can give it (the scoring service passes the machine's signals from
the catalogue). ``promote`` and ``rollback`` run ``load``'s checks first and leave the active
version unchanged when they fail; ``models list`` marks each version :meth:`~ModelRegistry.verify`
refuses with its reason.

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
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import joblib
from pydantic import ValidationError

from analytics.errors import ModelMismatch, RegistryError
from analytics.registry.metadata import (
    ModelMetadata,
    compatibility_problems,
    feature_problems,
    library_versions,
    now,
    unknown_keys,
)
from analytics.scoring.context import signal_columns, split_scope
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


def _slug_or_none(scope: str) -> str | None:
    try:
        return _slug(scope)
    except RegistryError:
        return None


def _recorded_scope(version_dir: Path) -> str | None:
    """The scope a version folder's ``metadata.json`` names (read leniently, unchecked); ``None``
    when it is unreadable or names none."""
    try:
        doc = json.loads((version_dir / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    scope = doc.get("scope") if isinstance(doc, dict) else None
    return scope.strip("/") if isinstance(scope, str) else None


def _version(text: object, where: str) -> str:
    """``text`` if it is a version name (``v0001``); a :class:`RegistryError` naming ``where``."""
    if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
        raise RegistryError(f"{where}: {text!r} is not a model version (v0001, v0002, …)")
    return text


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class UnusableModel(ModelMismatch):
    """A stored version this installation refuses to use: ``reason`` says why, without the name."""

    def __init__(self, scope: str, version: str, reason: str) -> None:
        self.scope, self.version, self.reason = scope, version, reason
        super().__init__(f"model {scope} {version} refused: {reason}")


class UnreadableMetadata(RegistryError):
    """A version's ``metadata.json`` cannot be read or is not model metadata."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, f"{path.name}: {reason}"
        super().__init__(f"{path}: not usable model metadata: {reason}")


def _validation_text(exc: ValidationError, shown: int = 3) -> str:
    """A pydantic error of ``metadata.json`` on one line: the first ``shown`` problems by key."""
    parts = []
    for e in exc.errors()[:shown]:
        if e["type"] == "json_invalid":
            parts.append(f"not valid JSON ({e.get('ctx', {}).get('error', e['msg'])})")
        else:
            loc = ".".join(str(x) for x in e["loc"]) or "<root>"
            parts.append(f"{loc}: {e['msg']}")
    more = exc.error_count() - shown
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _differs(what: str, artifact: list[str], recorded: list[str]) -> str:
    missing = [c for c in artifact if c not in recorded]
    extra = [c for c in recorded if c not in artifact]
    detail = (f"the artifact's {missing} are not recorded, the recorded {extra} are not the artifact's"
              if missing and extra else
              f"the artifact's {missing} are not recorded" if missing else
              f"the recorded {extra} are not the artifact's" if extra else "the same, in another order")
    return f"metadata.json records other {what} than the artifact was fitted with: {detail}"


def describes(meta: ModelMetadata, model: AnomalyModel) -> list[str]:
    """What ``meta`` records differently from the fitted ``model`` itself (its columns, the feature
    names its spec derives from them, its detector); empty when it describes it."""
    problems = []
    if list(model.columns) != list(meta.columns):
        problems.append(_differs("columns", list(model.columns), list(meta.columns)))
    elif model.feature_names() != list(meta.features):
        problems.append(_differs("features", model.feature_names(), list(meta.features)))
    if model.spec.detector != meta.detector:
        problems.append(f"metadata.json records detector {meta.detector!r}, the artifact is a "
                        f"{model.spec.detector!r} model")
    return problems


def signal_problem(scope: str, columns: Sequence[str], signals: Collection[str]) -> str | None:
    """What is wrong when a model of ``scope`` reading ``columns`` is to score a machine with
    ``signals`` (a signal it reads the machine does not have); ``None`` when nothing is."""
    missing = [c for c in signal_columns(columns) if c not in signals]
    if not missing:
        return None
    return (f"machine {split_scope(scope)[0]} has no signal {', '.join(missing)} (the model reads "
            f"{', '.join(signal_columns(columns))}; the machine has "
            f"{', '.join(sorted(signals)) or 'no signal yet'}): a model of another "
            "machine, or the machine's signals were renamed")


class ModelRegistry:
    """See module docstring. Not safe for concurrent writers to the same scope."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, scope: str) -> Path:
        return self.root / _slug(scope)

    def scopes(self) -> list[str]:
        """The scopes with models: each folder's own scope (:meth:`_folder_scope`); a folder no
        version's ``metadata.json`` names (all unreadable, or copied in) as its name with ``__``
        read as ``/`` (ambiguous: a level may itself hold ``__``)."""
        if not self.root.is_dir():
            return []
        return sorted(self._folder_scope(p) or p.name.replace("__", "/") for p in self.root.iterdir()
                      if (p / "active.json").exists() or any(p.glob("v*/metadata.json")))

    def _folder_scope(self, folder: Path) -> str | None:
        """The scope whose models ``folder`` holds: the one its active version's ``metadata.json``
        names, else its earliest version's, whose folder name is ``folder``'s (a version copied in
        from another scope does not count); ``None`` when no version names one. The folder name
        alone cannot say: ``/`` is stored as ``__`` and a level may hold ``__`` (``press__1``)."""
        try:
            active = json.loads((folder / "active.json").read_text(encoding="utf-8")).get("active")
        except (OSError, ValueError, AttributeError):
            active = None
        names = sorted((p.parent.name for p in folder.glob("v*/metadata.json")
                        if _VERSION_RE.fullmatch(p.parent.name)), key=lambda v: int(v[1:]))
        if isinstance(active, str) and active in names:
            names.insert(0, active)
        for v in names:
            scope = _recorded_scope(folder / v)
            if scope is not None and _slug_or_none(scope) == folder.name:
                return scope
        return None

    def versions(self, scope: str) -> list[str]:
        d = self._dir(scope)
        names = [p.parent.name for p in d.glob("v*/metadata.json") if _VERSION_RE.fullmatch(p.parent.name)]
        return sorted(names, key=lambda v: int(v[1:]))

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

    def resolve(self, scope: str, version: str | None = None) -> str:
        """``version`` (checked to be a version of ``scope``), or the active one."""
        v = version or self.active(scope)
        if v is not None:
            _version(v, f"scope {scope!r}")
        if v is None:
            raise RegistryError(f"scope {scope!r} has no active model (versions: {self.versions(scope)})")
        if not (self._dir(scope) / v / "metadata.json").exists():
            raise RegistryError(f"scope {scope!r} has no version {v!r} (versions: {self.versions(scope)})")
        return v

    def metadata(self, scope: str, version: str | None = None) -> ModelMetadata:
        """``metadata.json`` of ``version`` (default: the active one) as read, unchecked
        (:class:`UnreadableMetadata` when it is not model metadata)."""
        p = self._dir(scope) / self.resolve(scope, version) / "metadata.json"
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableMetadata(p, str(getattr(exc, "strerror", None) or exc)) from None
        try:
            return ModelMetadata.model_validate_json(text)
        except ValidationError as exc:
            raise UnreadableMetadata(p, _validation_text(exc)) from None

    def verify(self, scope: str, version: str | None = None) -> ModelMetadata:
        """The metadata of ``version`` (default: the active one) after every check that needs no
        unpickling (module docstring); :class:`UnusableModel` naming each problem otherwise."""
        v = self.resolve(scope, version)
        meta = self.metadata(scope, v)
        if meta.scope.strip("/") != scope.strip("/") or meta.version != v:
            raise UnusableModel(scope, v, f"its metadata.json says it is model {meta.scope} {meta.version}: "
                                          "the version folder was copied or renamed from there; a model "
                                          "is used only as the scope and version it was saved as — train "
                                          "this scope's own model")
        problems = []
        unknown = unknown_keys(meta)
        if unknown:
            problems.append(f"metadata.json has keys this zhizao ({library_versions()['zhizao']}) does not "
                            f"know: {', '.join(unknown)} (written by zhizao "
                            f"{meta.libraries.get('zhizao', 'unknown')}): it cannot check what they say "
                            "about the artifact")
        problems += compatibility_problems(meta)
        art = self._dir(scope) / v / "model.joblib"
        try:
            digest = hashlib.sha256(art.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(f"cannot read model.joblib ({exc.strerror or exc})")
        else:
            if digest != meta.sha256:
                problems.append("model.joblib does not match the SHA-256 recorded in metadata.json "
                                "(corrupted or replaced since it was saved)")
        if problems:
            raise UnusableModel(scope, v, "; ".join(problems) + ". Retrain it with `zhizao analytics train`")
        return meta

    def save(self, scope: str, model: AnomalyModel, *, validation: dict[str, float] | None = None,
             training: dict[str, Any] | None = None, notes: str = "",
             activate: bool | None = None) -> ModelMetadata:
        """Store ``model`` as the next version of ``scope``; made active when ``activate`` is true,
        never when false; by default (``None``) when it is the scope's first version."""
        d = self._dir(scope)
        owner = self._folder_scope(d) if d.is_dir() else None
        if owner is not None and owner != scope.strip("/"):
            raise RegistryError(f"{d} holds the models of {owner!r}, whose folder name is the same as "
                                f"{scope!r}'s ('/' is stored as '__'): rename one of the two machines")
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
        if activate or (activate is None and not existing):
            self._activate(scope, ver)
        return meta

    def load(self, scope: str, version: str | None = None, features: list[str] | None = None,
             signals: Collection[str] | None = None) -> AnomalyModel:
        """The model (the active one by default) after every check (module docstring):
        :meth:`verify`, then unpickled, the metadata must describe it; ``features``: the exact
        features the caller expects; ``signals``: those of the machine it is to score (every
        signal the model reads must be one). :class:`UnusableModel` naming each problem."""
        v = self.resolve(scope, version)
        meta = self.verify(scope, v)
        model = joblib.load(self._dir(scope) / v / "model.joblib")
        if not isinstance(model, AnomalyModel):
            raise UnusableModel(scope, v, f"model.joblib holds a {type(model).__name__}, not a model")
        problems = describes(meta, model)
        if problems:
            raise UnusableModel(scope, v, "; ".join(problems) + " (metadata.json was edited, or belongs to "
                                          "another artifact). Retrain it with `zhizao analytics train`")
        problems = feature_problems(meta, features) if features is not None else []
        if signals is not None:
            problem = signal_problem(scope, model.columns, signals)
            if problem:
                problems.append(problem)
        if problems:
            raise UnusableModel(scope, v, "; ".join(problems))
        return model

    def _activate(self, scope: str, version: str) -> None:
        ptr = self._pointer(scope)
        history = [v for v in ptr.get("history", []) if v != version] + [version]
        self._set_pointer(scope, version, history)

    def promote(self, scope: str, version: str) -> ModelMetadata:
        """Make ``version`` active once :meth:`load`'s checks pass (:class:`UnusableModel`, the
        active version unchanged, when they do not); returns its metadata."""
        if version not in self.versions(scope):
            raise RegistryError(f"scope {scope!r} has no version {version!r} "
                                f"(versions: {self.versions(scope)})")
        self.load(scope, version)
        self._activate(scope, version)
        return self.metadata(scope, version)

    def rollback(self, scope: str) -> str:
        """Re-activate the previously active version once :meth:`load`'s checks pass (the active
        version unchanged when they do not); returns it."""
        ptr = self._pointer(scope)
        history = list(ptr.get("history", []))
        if len(history) < 2:
            raise RegistryError(f"scope {scope!r}: nothing to roll back to (history {history})")
        history.pop()
        prev = str(history[-1])
        self.load(scope, prev)
        self._set_pointer(scope, prev, history)
        return prev
