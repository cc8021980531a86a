"""Where ``zhizao analytics score`` writes its output: a file replaced only on success, or stdout.

The output file is written as a unique temporary file beside it (``.NAME.<random>.tmp``, so a
file of the user's is never overwritten or removed) and renamed over it when scoring succeeded;
a failed run leaves any previous output as it was. An output that is the input file (the same
file under any name) is refused before anything is read. A device or pipe (``/dev/null``) is
written in place. File-system failures are ``DataError`` naming the output path.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from analytics.errors import DataError


@contextmanager
def output_to(out: Path, source: Path) -> Iterator[TextIO]:
    """``out`` (``-``: stdout) opened for writing, checked first (:func:`check_output`)."""
    if str(out) == "-":
        yield sys.stdout
        return
    check_output(out, source)
    if out.exists() and not out.is_file():
        with _opened(out, lambda: out.open("w", encoding="utf-8", newline="")) as fh:
            yield fh
        return
    fd, tmp = _temporary(out)
    try:
        with _opened(out, lambda: os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            yield fh
        try:
            os.replace(tmp, out)
        except OSError as exc:
            raise DataError(str(out), f"cannot write the output: {exc.strerror or exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_output(path: Path, source: Path) -> None:
    """Before any work: the output's directory exists, the output is not a directory (like a
    missing input file, a file-system failure: exit 1), nor the input itself (a usage error)."""
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise DataError(str(path), f"cannot write the output: directory {str(parent)!r} {what}")
    if path.is_dir():
        raise DataError(str(path), "cannot write the output: it is a directory")
    if path.exists() and source.exists() and os.path.samefile(path, source):
        raise DataError("--out", f"{str(path)!r} is the input file {str(source)!r}: the scores would "
                                 "replace the data; write them to another file")


def _temporary(out: Path) -> tuple[int, str]:
    """A new file beside ``out``, with the mode ``out`` has (a new file's mode if none)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(str(out), f"cannot write the output: cannot create a file in "
                                  f"{str(out.parent)!r}: {exc.strerror or exc}") from exc
    if out.exists():
        mode = stat.S_IMODE(out.stat().st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.fchmod(fd, mode)
    return fd, tmp


@contextmanager
def _opened(out: Path, opener: Callable[[], TextIO]) -> Iterator[TextIO]:
    """The file ``opener()`` returns, closed at the end; OS errors as ``DataError`` naming ``out``."""
    try:
        fh = opener()
    except OSError as exc:
        raise DataError(str(out), f"cannot write the output: {exc.strerror or exc}") from exc
    try:
        yield fh
    finally:
        try:
            fh.close()
        except OSError as exc:
            raise DataError(str(out), f"cannot write the output: {exc.strerror or exc}") from exc
