"""Loading validated configuration files (TOML or YAML) into pydantic models.

Every component's config is a pydantic model with ``extra="forbid"``; :func:`load_config`
turns every problem (syntax, unknown key, wrong type, bad value) into one
:class:`~zhizao.errors.ConfigError` listing each problem with its dotted key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from zhizao.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def read_document(path: Path) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict.

    Raises ``ConfigError`` for a missing file, a syntax error (with line/column where the
    parser gives them) or a top level that is not a table/mapping.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read file: {exc.strerror or exc}")]) from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            doc: object = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            doc = yaml.safe_load(text)
        else:
            raise ConfigError(source, [("", f"unknown config format {suffix!r}; use .toml or .yaml")])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [("", f"TOML syntax error: {exc}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [("", f"YAML syntax error: {exc}")]) from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(source, [("", "top level must be a table/mapping")])
    return doc


def validate(model: type[M], doc: dict[str, Any], source: str) -> M:
    """Validate ``doc`` against ``model``; every problem is reported with its dotted key."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc)) from exc


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(dotted.key[3], message)`` for each error of a pydantic ``ValidationError``."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        key = ""
        for part in err["loc"]:
            key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the sample config)"
        problems.append((key, msg))
    return problems


def load_config(model: type[M], path: str | Path) -> M:
    """Read and validate a config file; raises ``ConfigError`` listing every problem."""
    p = Path(path)
    return validate(model, read_document(p), str(p))
