"""Loading validated configuration files (TOML or YAML) into pydantic models.

Every component's config is a pydantic model with ``extra="forbid"``; :func:`load_config`
turns every problem (syntax, unknown key, wrong type, bad value) into one
:class:`~zhizao.errors.ConfigError` listing each problem with its dotted key.

File paths a component reads are typed :data:`ExistingFile` / :data:`ExistingFolder` (or checked
with :func:`check_existing`), and files it creates :data:`FileInExistingFolder`, so a typo in a
path is a config error naming the key (``tls.ca_file: file not found: /etc/zhizao/ca.pem``)
rather than a failure when the component first opens the file. Paths are checked as given
(relative ones against the working directory, as the component opens them).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from zhizao.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _kind(path: Path) -> Literal["file", "folder", "missing", "unknown"]:
    """What is at ``path``; ``"unknown"`` when a permission denies looking (the component, often
    another user than the person checking the config, may still be able to: not an error here)."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:
        return "unknown"
    return "folder" if stat.S_ISDIR(mode) else "file"


def check_existing(path: Path, kind: Literal["file", "folder", "any"] = "file") -> Path:
    """``path`` if a ``kind`` is there (``any``: a file or a folder), else a pydantic error
    (``file not found: /x``) that :func:`validate` reports under the field's key."""
    found = _kind(path)
    if found == "missing":
        raise PydanticCustomError(
            "path_not_found", "{kind} not found: {path}",
            {"kind": "folder" if kind == "folder" else "file", "path": str(path)},
        )
    if kind != "any" and found not in (kind, "unknown"):
        raise PydanticCustomError("path_kind", "not a {kind}: {path} is a {found}",
                                  {"kind": kind, "path": str(path), "found": found})
    return path


def check_parent_exists(path: Path) -> Path:
    """``path`` (a file a component creates when missing) if it is not a folder and the folder
    it goes in exists: a typo must not create folders."""
    found = _kind(path)
    if found == "folder":
        raise PydanticCustomError("path_kind", "not a file: {path} is a folder", {"path": str(path)})
    if found == "missing" and _kind(path.parent) not in ("folder", "unknown"):
        raise PydanticCustomError(
            "path_not_found", "folder not found: {folder} (folders are not created: check the path)",
            {"folder": str(path.parent)},
        )
    return path


ExistingFile = Annotated[Path, AfterValidator(check_existing)]
"""A path to a file that must exist when the config is validated."""


def check_existing_folder(path: Path) -> Path:
    """:func:`check_existing` for a folder."""
    return check_existing(path, "folder")


ExistingFolder = Annotated[Path, AfterValidator(check_existing_folder)]
"""A path to a folder that must exist when the config is validated."""
FileInExistingFolder = Annotated[Path, AfterValidator(check_parent_exists)]
"""A file a component may create (when missing), in a folder that must exist."""


_ENV_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def expand_env(doc: Any, env: Mapping[str, str] | None = None) -> tuple[Any, list[tuple[str, str]]]:
    """``doc`` (a parsed config) with ``${NAME}`` in its string values replaced from ``env``
    (default ``os.environ``) and ``$${`` by ``${``; and the problems, ``(dotted.key, message)``,
    of references that cannot be replaced: a variable that is not set, a ``${`` without a valid
    name (letters, digits, ``_``) and ``}``. Keys are never expanded. The loaders of the edge agent
    (:func:`edge_agent.config.load_agent_config`) and the site gateway (:func:`gateway.config.load`)
    call it before validation and raise :class:`~zhizao.errors.ConfigError` with the problems."""
    environ = os.environ if env is None else env
    problems: list[tuple[str, str]] = []

    def text(value: str, key: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, closed = m.group(1), m.group(2)
            if not closed or not _ENV_NAME.fullmatch(name):
                # the text after ${ is not echoed: it may be part of a secret written as a literal
                problems.append((key, f"the ${{ at character {m.start() + 1} of the value is not an "
                                      "environment variable reference ${NAME} (letters, digits, _, then }); "
                                      "write $${ for a literal ${"))
                return m.group(0)
            if name not in environ:
                problems.append((key, f"environment variable {name} is not set (referenced as ${{{name}}})"))
                return m.group(0)
            return environ[name]

        return _ENV_REF.sub(one, value) if "${" in value else value

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, str):
            return text(node, key)
        if isinstance(node, dict):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(doc, ""), problems


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
        elif err["type"] == "value_error":  # a validator's own message, without pydantic's prefix
            msg = msg.removeprefix("Value error, ")
        problems.append((key, msg))
    return problems


def load_config(model: type[M], path: str | Path) -> M:
    """Read and validate a config file; raises ``ConfigError`` listing every problem."""
    p = Path(path)
    return validate(model, read_document(p), str(p))


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (as written in a config: a name, an IPv4 or IPv6 address, IPv6 possibly in
    brackets) is this machine's loopback: ``localhost``, 127.0.0.0/8, ``::1`` (or an IPv4-mapped
    127.x). Names are never resolved: validating a config must not depend on DNS."""
    h = host.strip().lower().removesuffix(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def url_host(url: str) -> tuple[str, str]:
    """The host of a URL (``""`` when it has none) and ``host:port`` as given, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a number: the URL's own check reports it
        port = None
    return host, host_port(host, port)


def host_port(host: str, port: int | None) -> str:
    """``host:port`` for messages (``[::1]:1883`` for an IPv6 address)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return shown if port is None else f"{shown}:{port}"


def plaintext_warning(key: str, secret: str, host: str, how: str, fix: str) -> str:
    """One line saying that the ``secret`` at config ``key`` crosses the network to ``host``
    unencrypted (``how``), what fixes it and how to silence it (``allow_plaintext = true``)."""
    return (f"{key}: the {secret} goes to {host} unencrypted ({how}); {fix}, or set allow_plaintext = true "
            f"on this connection if its network is trusted")


def plain_http_target(url: str, allow_plaintext: bool) -> str | None:
    """``host:port`` when ``url`` sends what it carries unencrypted (``http://``) to a host that is
    not this machine's loopback, else ``None`` (``https://``, loopback, or ``allow_plaintext``)."""
    host, where = url_host(url)
    if allow_plaintext or urlsplit(url).scheme.lower() != "http" or is_loopback_host(host):
        return None
    return where


def http_bearer_warnings(key: str, url: str, token_field: str | None, allow_plaintext: bool) -> list[str]:
    """The :func:`plaintext_warning` lines of an HTTP client table at ``key`` posting to ``url``
    with a bearer token from ``token_field`` (``"token"``, ``"token_file"``; ``None``: no token)
    and maybe a password in the URL; none for https, loopback or ``allow_plaintext``."""
    where = plain_http_target(url, allow_plaintext)
    if where is None:
        return []
    how, fix = "http://", "use https://"
    found = []
    if token_field is not None:
        found.append(plaintext_warning(f"{key}.{token_field}", "bearer token", where, how, fix))
    if urlsplit(url).password is not None:
        found.append(plaintext_warning(f"{key}.url", "password in the URL", where, how, fix))
    return found
