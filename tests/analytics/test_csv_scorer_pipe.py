"""``zhizao analytics score FILE.csv --out -`` into a pipe: the output is streamed (the first line
arrives while the file is still being read), an unsorted file goes through the sort with the same
output as into a file, and a time error comes before any output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.analytics.conftest import normal_rows

T0 = 1_767_247_200  # 2026-01-01T06:00:00Z
ROOT = Path(__file__).resolve().parents[2]


def frame(n: int) -> pd.DataFrame:
    X = normal_rows(n, 3, 0).round(4)
    return pd.DataFrame({"ts": np.arange(n) + T0, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})


def score(*args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "zhizao.cli", "analytics", "score", *args],
                            stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def read_position(pid: int, path: Path) -> int | None:
    """Where the process reads ``path`` (its open file's offset); None if it has it not open."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path.resolve()):
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])  # "pos:\t<offset>"
        except (FileNotFoundError, ProcessLookupError):
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="reads /proc (Linux)")
def test_a_sorted_file_is_streamed_into_a_pipe(tmp_path: Path) -> None:
    """The whole output was kept in a temporary file until the file was scored: `... | head`
    printed nothing until then."""
    path = tmp_path / "x.csv"
    frame(200_000).to_csv(path, index=False)
    proc = score(str(path), "--out", "-")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert proc.stdout.readline() == b"timestamp,score,is_anomaly\n"
        assert proc.stdout.readline() == f"{T0},0.000000,0\n".encode()
        # the process is blocked writing into the full pipe, the input still being read
        assert proc.poll() is None
        position = read_position(proc.pid, path)
        assert position is not None and position < path.stat().st_size, "the input was read whole first"
    finally:
        proc.stdout.close()  # the reader goes away, as `head` does
        err = proc.stderr.read().decode()
        rc = proc.wait(60)
    assert rc == 141 and "Traceback" not in err, err


def test_an_unsorted_file_into_a_pipe_is_scored_as_into_a_file(tmp_path: Path) -> None:
    df = frame(20_000)
    late = pd.concat([df.drop(index=19_000), df.loc[[19_000]]])  # a late row at the end: a restart
    shuffled = df.sample(frac=1.0, random_state=1)
    for name, data in (("late", late), ("shuffled", shuffled), ("sorted", df)):
        lines = data.to_csv(index=False).splitlines()
        lines[700:700] = ["", ",,,"]  # blank lines: the first pass reads the time column only
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        to_file = score(str(path), "--out", str(tmp_path / f"{name}.out"))
        to_pipe = score(str(path), "--out", "-")
        piped, piped_err = to_pipe.communicate(timeout=120)
        _, file_err = to_file.communicate(timeout=120)
        assert to_file.returncode == 0 and to_pipe.returncode == 0, piped_err.decode()
        assert piped == (tmp_path / f"{name}.out").read_bytes() and piped.count(b"\n") == 20_001
        assert piped_err == file_err  # the same summary (rows out of order, blank lines)
        assert b"blank lines skipped: 2" in piped_err, piped_err.decode()
        assert (b"rows out of order" in piped_err) == (name != "sorted"), piped_err.decode()


@pytest.mark.parametrize("value, message", [("", "empty timestamp on line 1503"),
                                            ("x", "timestamp 'x' on line 1503 is not a number")])
def test_a_time_error_into_a_pipe_comes_before_any_output(tmp_path: Path, value: str,
                                                          message: str) -> None:
    lines = frame(3000).to_csv(index=False).splitlines()
    lines[1502] = f"{value},1.5,1.5,1.5"
    for name, data in (("sorted", lines), ("unsorted", [lines[0], *lines[1:][::-1]])):
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(data) + "\n")
        out, err = score(str(path), "--out", "-").communicate(timeout=120)
        shown = message.replace("1503", str(data.index(lines[1502]) + 1))
        assert out == b"" and shown in err.decode() and "Traceback" not in err.decode(), err.decode()
