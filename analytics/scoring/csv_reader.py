"""Reading a CSV export in chunks of rows, for the CSV scorer (:mod:`analytics.scoring.csv_scorer`).

Every cell is read as text (the scorer decides what is a number); memory stays bounded by the
chunk, whatever the file's length. Each row keeps its **file line** (1-based, the header's line
counted), so errors name the line a person finds in an editor: blank lines (and rows of empty
fields only) are skipped but counted. A quoted value spanning several lines, rare in telemetry
exports, shifts the numbers of the rows after it.

Encoding: ``encoding`` (default UTF-8); a byte-order mark decides instead when the encoding is
UTF-8 (a UTF-16 export from Excel, a UTF-8 file with a BOM). A file that does not decode is an
error naming the encoding and ``--encoding``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.errors import DataError

READ_ROWS = 16384
"""Rows per chunk read from the file."""

SEPARATORS = {",": ("','", "','"), ";": ("';'", "';'"), "\t": ("tab", "tab"), "|": ("'|'", "'|'")}
"""Separators a header is checked for when it does not split: (name, spelling for ``--sep``)."""

ENCODING_HINT = ("pass the file's encoding with --encoding, e.g. --encoding gbk (Chinese Windows), "
                 "cp1252 (Western Windows), latin-1, utf-16")


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; a usage error naming ``--encoding`` if Python has no such codec."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataError("--encoding", f"unknown encoding {encoding!r}; {ENCODING_HINT}") from None


def file_encoding(path: Path, encoding: str) -> str:
    """``encoding``, or what the file's byte-order mark says when ``encoding`` is UTF-8."""
    name = check_encoding(encoding)
    if name != "utf-8":
        return name
    try:
        with path.open("rb") as fh:
            head = fh.read(3)
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


@dataclass
class RawChunk:
    """Rows of the file as text (blank rows dropped), with their file lines and their index
    among the file's data rows (``rows``: 0, 1, ... in file order)."""

    frame: pd.DataFrame
    lines: NDArray[np.int64]
    rows: NDArray[np.int64]


@dataclass
class CsvFile:
    """A CSV file opened for chunked reading: its header is read once (:func:`open_csv`)."""

    path: Path
    sep: str
    encoding: str
    header: list[str]
    header_line: int
    """1-based line of the header (blank lines before it are skipped)."""
    blank_rows: int = 0
    """Blank rows met by the last :meth:`chunks` pass."""
    _options: dict[str, Any] = field(default_factory=dict)

    def chunks(self, rows: int | None = None, columns: list[str] | None = None) -> Generator[RawChunk]:
        """The data rows, in file order, ``rows`` (:data:`READ_ROWS`) at a time; each pass reads
        the file from its start. ``columns``: read only these (faster); a row empty in them is
        then skipped as blank, and counted."""
        self.blank_rows = 0
        line, index = self.header_line + 1, 0
        options = self._options if columns is None else {**self._options, "usecols": columns}
        try:
            with pd.read_csv(self.path, chunksize=rows or READ_ROWS, **options) as reader:
                for read in reader:
                    frame = read.fillna("")
                    lines = np.arange(line, line + len(frame), dtype=np.int64)
                    line += len(frame)
                    blank = (frame == "").all(axis=1).to_numpy()
                    if blank.any():
                        self.blank_rows += int(blank.sum())
                        frame, lines = frame[~blank].reset_index(drop=True), lines[~blank]
                    if len(frame):
                        yield RawChunk(frame, lines, np.arange(index, index + len(frame), dtype=np.int64))
                        index += len(frame)
        except UnicodeDecodeError as exc:
            raise _decode_error(self.path, self.encoding, exc) from None
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(str(self.path), f"cannot read CSV: {exc}") from exc


def open_csv(path: Path, sep: str, encoding: str = "utf-8") -> CsvFile:
    """Open ``path`` for :meth:`CsvFile.chunks`: its encoding, header line and header."""
    enc = file_encoding(path, encoding)
    skip, header_text = _header_line(path, enc)
    if header_text is None:
        raise DataError(str(path), "no data rows (the file is empty)")
    # several characters: the python engine, told so (pandas warns when it falls back by itself);
    # it reads a separator as a regular expression, so escape it to keep it literal
    options: dict[str, Any] = {
        "sep": re.escape(sep) if len(sep) > 1 else sep, "engine": "python" if len(sep) > 1 else "c",
        "dtype": str, "keep_default_na": False, "skip_blank_lines": False, "skiprows": skip,
        "encoding": enc}
    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0, **options).columns]
    except UnicodeDecodeError as exc:
        raise _decode_error(path, enc, exc) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(str(path), f"cannot read CSV: {exc}{sep_hint(header_text, sep)}") from exc
    if len(header) == 1 and (hint := sep_hint(header_text, sep)):
        raise DataError(str(path), f"one column only with separator {sep!r}{hint}")
    return CsvFile(path, sep, enc, header, skip + 1, _options=options)


def _header_line(path: Path, encoding: str) -> tuple[int, str | None]:
    """(blank lines before the header, the header's text; None for a file of blank lines)."""
    try:
        with path.open(encoding=encoding, newline="") as fh:
            for skip, text in enumerate(fh):
                if text.strip():
                    return skip, text
    except UnicodeDecodeError as exc:
        raise _decode_error(path, encoding, exc) from None
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    return 0, None


def _decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> DataError:
    byte = exc.object[exc.start:exc.start + 1]
    shown = f" (byte 0x{byte.hex()})" if byte else ""
    return DataError(str(path), f"cannot decode it as {encoding}{shown}: is it in another encoding? "
                                f"{ENCODING_HINT}")


def sep_hint(header: str, sep: str) -> str:
    """If the header line does not contain ``sep`` but another common separator, say which."""
    if sep in header:
        return ""
    counts = {c: header.count(c) for c in SEPARATORS if c != sep}
    best = max(counts, key=lambda c: counts[c])
    if not counts[best]:
        return ""
    return (f"; its header {header.strip()[:80]!r} has no {sep!r} but {counts[best]} × {best!r}: "
            f"is it {SEPARATORS[best][0]}-separated? try --sep {SEPARATORS[best][1]}")
