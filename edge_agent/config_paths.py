"""Checks of the paths a config names *on the machine that loads it* (agent and gateway).

A component's folders and files are checked when its config is validated, naming the key, so a
typo is ``exit 2`` from ``check-config`` rather than a new folder (``/vra/lib/zhizao/``) or a
failure at the first write:

- folders it writes in (``agent.state_dir``): must exist and be writable;
- files it creates when missing (``buffer.path``, ``deadletter.path``, the gateway's
  ``deadletter_path``): their folder must exist and be writable — the same rule and wording as
  the OPC UA ``client_cert`` (:func:`zhizao.config.check_parent_exists`); folders are never created;
- files it reads (``token_file``): must exist, like the TLS files (:func:`zhizao.config.check_existing`).

These checks are about *this* machine, so they run only when the config is validated for it: with
``context=host_context()`` (``zhizao agent check-config`` / ``certs`` / run and the gateway's
``load(path, on_this_host=True)``). Validating a config meant for another machine (a container's,
``tests/e2e/test_deploy.py``) or building one in code for folders created later skips them.
A path whose folder this user may not even look into is not reported (the service may run as
another user who can): only what is certainly wrong is an error.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo
from pydantic_core import PydanticCustomError

from zhizao.config import check_existing, check_parent_exists

ON_THIS_HOST = "zhizao.on_this_host"
"""Validation-context key: check the paths on this machine."""
UNTRUSTED_SERVERS_OK = "zhizao.untrusted_servers_ok"
"""Validation-context key (``zhizao agent certs``): a secure OPC UA connector may have no trust
anchor yet — first contact, to see the server certificate before pinning it."""


def host_context(*, untrusted_servers_ok: bool = False) -> dict[str, Any]:
    """The validation context of a config loaded to be used on this machine."""
    return {ON_THIS_HOST: True, UNTRUSTED_SERVERS_OK: untrusted_servers_ok}


def on_this_host(info: ValidationInfo) -> bool:
    """Whether this validation checks paths on this machine (see the module docstring)."""
    return bool(info.context and info.context.get(ON_THIS_HOST))


def untrusted_servers_ok(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(UNTRUSTED_SERVERS_OK))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.geteuid()}"


def _not_writable(path: Path, kind: str) -> PydanticCustomError:
    return PydanticCustomError(
        "path_not_writable", "{kind} not writable: {path} (by {user}, who checks it)",
        {"kind": kind, "path": str(path), "user": _user()},
    )


def _may(path: Path, mode: int) -> bool:
    return os.access(path, mode)


def _denied(path: Path, mode: int) -> bool:
    """``path`` exists, this user can look at it and may not use it with ``mode`` (a folder this
    user cannot even look into is not reported: see the module docstring)."""
    try:
        path.stat()
    except OSError:
        return False
    return not _may(path, mode)


def check_writable_folder(path: Path) -> Path:
    """``path`` if it is an existing folder this user can create files in."""
    check_existing(path, "folder")
    if _denied(path, os.W_OK | os.X_OK):
        raise _not_writable(path, "folder")
    return path


def check_file_in_writable_folder(path: Path) -> Path:
    """``path`` (a file created when missing) if its folder exists and it can be written: the file
    when it exists, else its folder. ``folder not found: /vra/lib/zhizao (folders are not
    created: check the path)``."""
    check_parent_exists(path)
    if path.exists():
        if _denied(path, os.W_OK):
            raise _not_writable(path, "file")
    elif _denied(path.parent, os.W_OK | os.X_OK):
        raise _not_writable(path.parent, "folder")
    return path


def check_readable_file(path: Path) -> Path:
    """``path`` if it is an existing file this user can read (``file not found: /etc/zhizao/agent.token``)."""
    check_existing(path, "file")
    if _denied(path, os.R_OK):
        raise PydanticCustomError("path_not_readable", "file not readable: {path} (by {user}, who checks it)",
                                  {"path": str(path), "user": _user()})
    return path
