"""Review 66 of the CSV scorer: an unsorted file into ``/dev/null``, the decimal-comma hint read
from the warm-up rows only (appending a row never turns a scored file into an error), SIGTERM
during the sort, and a file that changes between the two passes into a pipe."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from analytics.errors import DataError
from analytics.scoring.csv_scorer import score_csv

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_247_200  # 2026-01-01T06:00:00Z


def run(*args: str, stdout: int | IO[bytes] = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zhizao.cli", "analytics", "score", *args],
                          check=False, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=ROOT,
                          timeout=120)


def _unsorted(path: Path, n: int = 600) -> None:
    rng = np.random.default_rng(0)
    rows = [f"{T0 + i},{rng.normal():.4f},{rng.normal():.4f}" for i in range(n)]
    rows[500], rows[501] = rows[501], rows[500]  # one row out of place, after the warm-up
    path.write_text("ts,a,b\n" + "\n".join(rows) + "\n")


def test_unsorted_input_into_dev_null_out(tmp_path: Path) -> None:
    """``--out /dev/null`` is written in place; an unsorted input restarted the output (seek +
    truncate), and truncating /dev/null is EINVAL: a traceback. Only a regular file is rewound."""
    path = tmp_path / "x.csv"
    _unsorted(path)
    r = run(str(path), "--out", "/dev/null")
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode()[-2000:]
    assert b"2 rows out of order" in r.stderr, r.stderr.decode()


def test_unsorted_input_stdout_redirected_to_dev_null(tmp_path: Path) -> None:
    """``zhizao analytics score x.csv --out - > /dev/null`` (stdout: seekable, not O_APPEND)."""
    path = tmp_path / "x.csv"
    _unsorted(path)
    with open("/dev/null", "wb") as devnull:
        r = run(str(path), "--out", "-", stdout=devnull)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode()[-2000:]


def test_appending_a_row_never_turns_a_scored_file_into_an_error(tmp_path: Path) -> None:
    """A column empty in the warm-up is left out; a row appended later holding '1,5' there (a
    note, a part list) made the whole run an error: the decimal-comma hint read the file's first
    chunk (16,384 rows), not the warm-up rows the column choice is made from."""
    rng = np.random.default_rng(1)
    rows = [f"{T0 + i},{rng.normal():.4f}," for i in range(50)]
    before = tmp_path / "before.csv"
    before.write_text("ts,a,note\n" + "\n".join(rows) + "\n")
    after = tmp_path / "after.csv"
    after.write_text("ts,a,note\n" + "\n".join([*rows, f"{T0 + 50},0.1,\"1,5\""]) + "\n")
    r1 = run(str(before), "--warmup", "20", "--out", str(tmp_path / "1.out"))
    assert r1.returncode == 0, r1.stderr.decode()
    r2 = run(str(after), "--warmup", "20", "--out", str(tmp_path / "2.out"))
    assert r2.returncode == 0, r2.stderr.decode()
    first = (tmp_path / "1.out").read_text().splitlines()
    assert (tmp_path / "2.out").read_text().splitlines()[:len(first)] == first


class _Pipe(io.StringIO):
    """An output that cannot be rewound, as a pipe."""

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize("out", [io.StringIO, _Pipe])
@pytest.mark.parametrize("late", [False, True])
def test_the_decimal_comma_hint_reads_the_warm_up_rows_only(tmp_path: Path, out: type[io.StringIO],
                                                            late: bool) -> None:
    """In time order or not, into a file or a pipe: '1,5' in a column with no number in the
    warm-up is the decimal-comma error when it is in a warm-up row, and nothing (the column left
    out) when it is in a later row, wherever that row is in the file."""
    n = 60
    rng = np.random.default_rng(3)
    order = rng.permutation(n) if late else np.arange(n)  # late: shuffled, through the sort
    at = 35 if late else 5  # the row (in time order) holding "1,5": after or in the 20 warm-up rows
    lines = [f"{T0 + int(i)},{rng.normal():.4f}," + ('"1,5"' if i == at else "") for i in order]
    path = tmp_path / "x.csv"
    path.write_text("ts,a,note\n" + "\n".join(lines) + "\n")
    if late:
        summary = score_csv(path, out(), warmup=20)
        assert summary.left_out == ["note"] and summary.rows == n
        assert summary.out_of_order_rows
    else:
        with pytest.raises(DataError, match=r"column 'note' has '1,5'; decimal commas\?"):
            score_csv(path, out(), warmup=20)
    shuffled_early = [f"{T0 + int(i)},{rng.normal():.4f}," + ('"1,5"' if i == 5 else "") for i in
                      rng.permutation(n)]
    path.write_text("ts,a,note\n" + "\n".join(shuffled_early) + "\n")
    with pytest.raises(DataError, match=r"decimal commas\?"):
        score_csv(path, out(), warmup=20)


@pytest.mark.xdist_group("csv-scorer-heavy")
def test_sigterm_during_the_sort_leaves_no_temporary_files(tmp_path: Path) -> None:
    """``kill <pid>`` (SIGTERM: a timeout, a CI cancel, ``docker stop``) while an unsorted file is
    sorted left the runs directory (about the parsed file's size) and the output's temp file;
    now the command exits 143 (as killed by SIGTERM), no traceback, nothing left behind."""
    rng = np.random.default_rng(2)
    n = 600_000
    order = rng.permutation(n)
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("ts,a,b\n")
        fh.writelines(f"{T0 + int(i)},{x:.3f},{y:.3f}\n" for i, x, y in
                      zip(order, rng.normal(size=n), rng.normal(size=n), strict=True))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-m", "zhizao.cli", "analytics", "score", str(path), "--out",
                             str(tmp_path / "out.csv")], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(tmpdir.glob("zhizao-score-sort-*/run*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(tmpdir.glob("zhizao-score-sort-*/run*")), "the sort never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    left = [p.name for p in tmpdir.iterdir()] + [p.name for p in tmp_path.glob(".out.csv.*.tmp")]
    assert left == [], left
    assert proc.returncode == 143 and b"Traceback" not in err, err.decode()[-2000:]
    assert not (tmp_path / "out.csv").exists()


class _ChangesTheInput(_Pipe):
    """A pipe that, at the first write (after the first pass found the rows in time order),
    swaps the timestamps of two rows near the end of the input, as another program rewriting
    the file would."""

    def __init__(self, path: Path, a: int, b: int) -> None:
        super().__init__()
        self.path, self.a, self.b, self.done = path, a, b, False

    def write(self, s: str) -> int:
        if not self.done:
            self.done = True
            data = self.path.read_bytes()
            lines = data.split(b"\n")
            (ta, ra), (tb, rb) = (lines[i].split(b",", 1) for i in (self.a, self.b))
            lines[self.a], lines[self.b] = tb + b"," + ra, ta + b"," + rb  # same length: in place
            with self.path.open("r+b") as fh:
                fh.write(b"\n".join(lines))
        return super().write(s)


def test_a_file_that_changes_between_the_two_passes_is_an_error_not_misordered(tmp_path: Path) -> None:
    """Into a pipe, a first pass checks the time order, a second scores the rows as they come:
    a row earlier than the one before in the second pass (the file changed in between) is an
    error naming the line, not rows scored out of time order."""
    n = 100_000
    rng = np.random.default_rng(4)
    path = tmp_path / "x.csv"
    path.write_text("ts,a\n" + "".join(f"{T0 + i},{x:.4f}\n" for i, x in enumerate(rng.normal(size=n))))
    out = _ChangesTheInput(path, n - 10, n - 9)  # file lines 99991 and 99992 (the header: line 1)
    with pytest.raises(DataError, match=r"changed while being read: line 99992 is earlier"):
        score_csv(path, out, warmup=20)
    assert out.done
