"""``zhizao analytics score``, user review 62: streaming in bounded memory, columns decided from the
warm-up, explicit time formats, the degenerate threshold, the output path, config values, inf and
overflow, file line numbers, date + time columns, encodings, label columns."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.cli import main
from analytics.errors import DataError
from analytics.scoring.csv_scorer import ScoreSummary, score_csv
from tests.analytics.conftest import normal_rows

T0 = 1_767_247_200  # 2026-01-01T06:00:00Z


def frame(n: int, seed: int = 0, shift_at: int | None = None) -> pd.DataFrame:
    X = normal_rows(n, 3, seed)
    if shift_at is not None:
        X[shift_at:, 2] += 12
    return pd.DataFrame({"ts": np.arange(n) + T0, "a": X[:, 0].round(4), "b": X[:, 1].round(4),
                         "c": X[:, 2].round(4)})


def run(path: Path, **kw: object) -> tuple[str, ScoreSummary]:
    buf = io.StringIO()
    summary = score_csv(path, buf, **kw)  # type: ignore[arg-type]
    return buf.getvalue(), summary


def cli(*args: str) -> int:
    return main(["score", *args])


# --- A: streaming, bounded memory; unsorted input through an external sort ---------------------------


def peak_bytes(path: Path, **kw: object) -> int:
    """Peak of the memory Python and numpy allocate while ``path`` is scored into a file."""
    with path.with_suffix(".out").open("w") as out:
        tracemalloc.start()
        try:
            score_csv(path, out, **kw)  # type: ignore[arg-type]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and sort runs of a few thousand rows, so that small files show the bound."""
    try:
        from analytics.scoring import csv_reader, csv_sort
    except ImportError:  # the code before review 62 read the file whole
        return
    monkeypatch.setattr(csv_reader, "READ_ROWS", 2048)
    monkeypatch.setattr(csv_sort, "RUN_ROWS", 4096)
    monkeypatch.setattr(csv_sort, "MERGE_ROWS", 4096)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_memory_does_not_grow_with_the_file(tmp_path: Path, order: str) -> None:
    """A file 4 × longer needs about the same memory, in time order or not (the file used to be
    read whole: 2 M rows, 747 MB RSS)."""
    peaks = []
    for n in (20_000, 80_000):
        df = frame(n)
        rows = df if order == "sorted" else df.sample(frac=1.0, random_state=1)
        rows.to_csv(tmp_path / "x.csv", index=False)
        peaks.append(peak_bytes(tmp_path / "x.csv", chunk=2048))
    assert peaks[1] < 1.6 * peaks[0], peaks  # the whole file in memory: about 4 ×


def test_sorted_and_shuffled_files_score_the_same_through_a_many_level_merge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs merged a few at a time (several merge levels) give the stable time order: the output
    is the in-order file's, to the byte; equal timestamps keep file order."""
    from analytics.scoring import csv_reader, csv_sort

    monkeypatch.setattr(csv_reader, "READ_ROWS", 256)
    monkeypatch.setattr(csv_sort, "RUN_ROWS", 300)
    monkeypatch.setattr(csv_sort, "MERGE_ROWS", 200)
    monkeypatch.setattr(csv_sort, "FAN_IN", 3)
    df = frame(6000, shift_at=5000)
    df.loc[100:140, "ts"] = df.loc[100, "ts"]  # equal timestamps: file order kept
    df.to_csv(tmp_path / "sorted.csv", index=False)
    shuffled = df.sample(frac=1.0, random_state=4)
    order = shuffled.index.to_numpy()
    # the stable sort of the shuffled rows is the reference (ties in their shuffled order)
    reference = shuffled.sort_values("ts", kind="stable")
    reference.to_csv(tmp_path / "reference.csv", index=False)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    want, _ = run(tmp_path / "reference.csv", warmup=300, chunk=512)
    got, summary = run(tmp_path / "shuffled.csv", warmup=300, chunk=512)
    assert got == want
    moved = int((reference.index.to_numpy() != order).sum())
    assert summary.out_of_order_rows == moved > 5000
    assert summary.duplicate_timestamps == 40
    # one late row at the very end: the rows already written are discarded, the file is sorted
    late = pd.concat([df.iloc[:5999], df.iloc[[0]].assign(a=1.0)])
    late.to_csv(tmp_path / "late.csv", index=False)
    late.sort_values("ts", kind="stable").to_csv(tmp_path / "late_sorted.csv", index=False)
    got, summary = run(tmp_path / "late.csv", warmup=300, chunk=512)
    want, _ = run(tmp_path / "late_sorted.csv", warmup=300, chunk=512)
    assert got == want and summary.out_of_order_rows == 5999


class Pipe(io.StringIO):
    """An output that cannot be rewound (stdout into a pipe)."""

    def seekable(self) -> bool:
        return False


def test_output_that_cannot_be_rewound_still_gets_the_sorted_result(tmp_path: Path) -> None:
    df = frame(2000)
    df.to_csv(tmp_path / "sorted.csv", index=False)
    df.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    want, _ = run(tmp_path / "sorted.csv")
    pipe = Pipe()
    summary = score_csv(tmp_path / "reversed.csv", pipe)
    assert pipe.getvalue() == want and summary.out_of_order_rows == 2000  # every row moved
    # stdout appended to a file (``>>``): its position is 0 whatever it holds; nothing is lost
    (tmp_path / "log.csv").write_text("kept\n")
    with os.fdopen(os.open(tmp_path / "log.csv", os.O_WRONLY | os.O_APPEND), "w") as appended:
        assert appended.tell() == 0
        score_csv(tmp_path / "reversed.csv", appended)
    assert (tmp_path / "log.csv").read_text() == "kept\n" + want


# --- B: columns decided from the header and the warm-up rows only -------------------------------------


def test_a_column_without_numbers_in_the_warmup_is_left_out_and_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = frame(1000).astype({"c": object})
    df.loc[:499, "c"] = ""  # numbers only from row 500: appending rows used to make a file fail
    df.iloc[:450].to_csv(tmp_path / "head.csv", index=False)
    df.to_csv(tmp_path / "full.csv", index=False)
    head, s1 = run(tmp_path / "head.csv", warmup=400)
    full, s2 = run(tmp_path / "full.csv", warmup=400)
    assert s1.columns == s2.columns == ["a", "b"] and s2.left_out == ["c"]
    assert full.startswith(head)  # the prefix scores as the same rows of the full file
    assert cli(str(tmp_path / "full.csv"), "--out", str(tmp_path / "s.csv")) == 0
    assert "left out, no number in the 400 warm-up rows: c" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"\['c'\].*no numeric value in the 400 warm-up rows"):
        run(tmp_path / "full.csv", warmup=400, columns=["a", "c"])


# --- C: no per-value date guessing --------------------------------------------------------------------


def day_first(path: Path, n: int = 2000) -> None:
    t = pd.date_range("2026-01-01", periods=n, freq="30min")
    v = np.random.default_rng(0).normal(size=n).round(3)
    pd.DataFrame({"Date": t.strftime("%d/%m/%Y %H:%M:%S"), "v": v}).to_csv(path, index=False)


def test_day_first_dates_need_a_time_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """They were guessed value by value: 1952 of 2000 rows 'out of order' and reordered."""
    day_first(tmp_path / "dmy.csv")
    assert cli(str(tmp_path / "dmy.csv"), "--out", str(tmp_path / "s.csv")) == 1
    err = capsys.readouterr().err
    assert "column 'Date'" in err and "'01/01/2026 00:00:00' on line 2" in err and "--time-format" in err
    assert "'%d/%m/%Y %H:%M:%S' (day first)" in err
    assert cli(str(tmp_path / "dmy.csv"), "--time-format", "%d/%m/%Y %H:%M:%S",
               "--out", str(tmp_path / "s.csv")) == 0
    assert "out of order" not in capsys.readouterr().err
    out = pd.read_csv(tmp_path / "s.csv")
    assert out["timestamp"].tolist() == pd.read_csv(tmp_path / "dmy.csv")["Date"].tolist()
    # a value that does not match the format names its line
    text = (tmp_path / "dmy.csv").read_text().splitlines()
    text[1500] = "2026-02-01 06:00:00,0.1"
    (tmp_path / "bad.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match="'2026-02-01 06:00:00' on line 1501 does not match --time-format"):
        run(tmp_path / "bad.csv", time_format="%d/%m/%Y %H:%M:%S")
    assert cli(str(tmp_path / "dmy.csv"), "--time-format", "%d/%m/%Y", "--no-time", "--out", "-") == 2


# --- D: the degenerate threshold; scores stay below 1 -------------------------------------------------


def test_a_change_below_the_scale_floor_of_a_constant_warmup_is_not_anomalous(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """v = 50.0 in the warm-up, then 50.001: the threshold was 1e-12 and every later score 1.000000."""
    for name, after in (("tiny.csv", 50.001), ("real.csv", 50.5)):
        pd.DataFrame({"ts": np.arange(1000) + T0, "v": [50.0] * 700 + [after] * 300}).to_csv(
            tmp_path / name, index=False)
    assert cli(str(tmp_path / "tiny.csv"), "--out", str(tmp_path / "s.csv")) == 0
    assert "threshold = one column moving by its scale floor" in capsys.readouterr().err
    tiny = pd.read_csv(tmp_path / "s.csv")
    assert tiny["score"].max() < 0.01 and tiny["is_anomaly"].sum() == 0
    out, summary = run(tmp_path / "real.csv")
    real = pd.read_csv(io.StringIO(out))
    assert summary.threshold == pytest.approx(1.0) and summary.threshold_floored
    assert real["is_anomaly"].iloc[720:].all() and real["score"].max() < 1


def test_scores_far_above_the_threshold_saturate_below_1(tmp_path: Path) -> None:
    df = frame(1000)
    df.loc[800:, "a"] = 1e9
    df.to_csv(tmp_path / "x.csv", index=False)
    out, _ = run(tmp_path / "x.csv")
    assert "1.000000" not in out
    scores = pd.read_csv(io.StringIO(out))["score"]
    assert scores.max() == 0.999999 and scores.notna().all()


# --- E: the output path -------------------------------------------------------------------------------


def test_output_that_is_the_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It replaced the data with the scores (exit 0)."""
    frame(600).to_csv(tmp_path / "x.csv", index=False)
    data = (tmp_path / "x.csv").read_bytes()
    (tmp_path / "link.csv").symlink_to(tmp_path / "x.csv")
    for out in ("x.csv", "link.csv", "./x.csv"):
        assert cli(str(tmp_path / "x.csv"), "--out", str(tmp_path / out)) == 2
        assert "is the input file" in capsys.readouterr().err
    assert (tmp_path / "x.csv").read_bytes() == data


def test_the_users_files_beside_the_output_are_left_alone(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """OUT.tmp was the temporary output: a file of that name was overwritten, then removed; a
    directory of that name failed the run naming the wrong path."""
    frame(600).to_csv(tmp_path / "x.csv", index=False)
    (tmp_path / "s.csv.tmp").write_text("mine\n")
    (tmp_path / "t.csv.tmp").mkdir()
    assert cli(str(tmp_path / "x.csv"), "--out", str(tmp_path / "s.csv")) == 0
    assert cli(str(tmp_path / "x.csv"), "--out", str(tmp_path / "t.csv")) == 0
    assert (tmp_path / "s.csv.tmp").read_text() == "mine\n" and (tmp_path / "t.csv.tmp").is_dir()
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(pd.read_csv(tmp_path / "t.csv")) == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.csv.tmp", "t.csv", "t.csv.tmp", "x.csv"]
    # a failed run leaves nothing behind and the previous output as it was
    before = (tmp_path / "s.csv").read_bytes()
    assert cli(str(tmp_path / "x.csv"), "--warmup", "5000", "--out", str(tmp_path / "s.csv")) == 1
    assert (tmp_path / "s.csv").read_bytes() == before and len(list(tmp_path.iterdir())) == 5


def test_a_pipe_as_output_is_written_not_replaced(tmp_path: Path) -> None:
    """``--out /dev/null`` (as root) replaced the device by a regular file: a device or pipe is
    written in place."""
    frame(600).to_csv(tmp_path / "x.csv", index=False)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    read = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # no writer needed to open it
    got = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(read, 65536)
            except BlockingIOError:  # a writer, nothing written yet
                chunk = None
            if chunk == b"" and got:  # the writer closed it
                return
            if not chunk:
                threading.Event().wait(0.01)
            got.extend(chunk or b"")

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    rc = cli(str(tmp_path / "x.csv"), "--out", str(fifo))
    reader.join(10)
    os.close(read)
    assert rc == 0 and fifo.is_fifo() and bytes(got).count(b"\n") == 601


# --- F: config values the spec lets through ------------------------------------------------------------


def test_a_window_below_1_in_the_config_is_reported_by_key(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    frame(600).to_csv(tmp_path / "x.csv", index=False)
    for text, key in (("windows = [0]\n", "windows[0]"), ("windows = [5, -5]\n", "windows[1]"),
                      ("diff_windows = [0]\n", "diff_windows[0]")):
        (tmp_path / "m.toml").write_text(text)
        assert cli(str(tmp_path / "x.csv"), "--config", str(tmp_path / "m.toml"),
                   "--out", str(tmp_path / "s.csv")) == 2
        err = capsys.readouterr().err
        assert f"{key}: a window is at least 1 row" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


# --- G: inf and overflow ------------------------------------------------------------------------------


def test_inf_and_overflowing_values_count_as_missing(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """'inf' aborted the run ('non-finite value at row 24064, column 1'); 1e308 gave NaN scores."""
    df = frame(3000).astype({"a": object, "b": object, "c": object})
    df.loc[1500, "b"] = "inf"
    df.loc[1600, "a"] = "-Infinity"
    df.loc[2000, "c"] = "1e308"
    df.loc[2100, "c"] = "3.4e38"
    df.to_csv(tmp_path / "x.csv", index=False)
    assert cli(str(tmp_path / "x.csv"), "--out", str(tmp_path / "s.csv")) == 0
    err = capsys.readouterr().err
    assert "of which inf or beyond ±1e+15: a=1, b=1, c=2" in err and "filled with the last value" in err
    out = pd.read_csv(tmp_path / "s.csv")
    assert len(out) == 3000 and out["score"].notna().all() and out["score"].max() < 1
    clean = frame(3000)
    clean.loc[1500, "b"] = clean.loc[1499, "b"]
    clean.loc[1600, "a"] = clean.loc[1599, "a"]
    clean.loc[[2000, 2100], "c"] = clean.loc[[1999, 2099], "c"].to_numpy()
    clean.to_csv(tmp_path / "clean.csv", index=False)  # the same as the last value carried
    want, _ = run(tmp_path / "clean.csv")
    assert (tmp_path / "s.csv").read_text() == want


# --- H: error lines are the file's lines --------------------------------------------------------------


def test_timestamp_errors_name_the_file_line_and_value(tmp_path: Path) -> None:
    """It said "unparseable timestamp '1767247200' on line 2" for line 503's empty or 'x' value,
    and blank lines shifted the line numbers."""
    lines = frame(1000)[["ts", "a"]].to_csv(index=False).splitlines()
    for value, message in (("", "empty timestamp on line 503"),
                           ("x", "timestamp 'x' on line 503 is not a number")):
        bad = lines.copy()
        bad[502] = f"{value},1.5"
        (tmp_path / "x.csv").write_text("\n".join(bad) + "\n")
        with pytest.raises(DataError, match=message) as exc:
            run(tmp_path / "x.csv")
        assert exc.value.where == "column 'ts'"
    blank = lines.copy()
    blank[602] = "y,1.5"
    blank[10:10] = [""]
    blank[20:20] = [""]
    (tmp_path / "b.csv").write_text("\n".join(blank) + "\n")
    assert blank[604] == "y,1.5"
    with pytest.raises(DataError, match="timestamp 'y' on line 605 "):
        run(tmp_path / "b.csv")
    blank[604] = lines[602]
    (tmp_path / "b.csv").write_text("\n".join(blank) + "\n")
    out, summary = run(tmp_path / "b.csv")
    assert summary.blank_lines == 2 and summary.rows == 1000 and out.count("\n") == 1001


# --- I: a date column beside a time column --------------------------------------------------------------


def test_date_only_time_column_beside_a_time_column(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """'Date' was taken, 'Time' dropped silently, every timestamp of a day equal."""
    t = pd.date_range("2026-01-01", periods=1500, freq="1min")
    v = np.random.default_rng(0).normal(size=1500).round(3)
    pd.DataFrame({"Date": t.strftime("%Y-%m-%d"), "Time": t.strftime("%H:%M:%S"), "v": v}).to_csv(
        tmp_path / "x.csv", index=False)
    assert cli(str(tmp_path / "x.csv"), "--out", str(tmp_path / "s.csv")) == 0
    err = capsys.readouterr().err
    assert "duplicate timestamps: 1498 rows have the time of the row before" in err
    assert "holds dates only" in err and "--time-col Date,Time" in err
    assert cli(str(tmp_path / "x.csv"), "--time-col", "Date,Time", "--out", str(tmp_path / "s.csv")) == 0
    err = capsys.readouterr().err
    assert "duplicate" not in err and "time: column 'Date,Time'" in err
    assert pd.read_csv(tmp_path / "s.csv")["timestamp"].iloc[61] == "2026-01-01 01:01:00"


# --- J: encodings, a file as long as the warm-up, --columns ',' ----------------------------------------


def test_encodings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = frame(600).rename(columns={"a": "温度"}).to_csv(index=False)
    (tmp_path / "gbk.csv").write_bytes(text.encode("gbk"))
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    (tmp_path / "u8.csv").write_text(text)
    want, _ = run(tmp_path / "u8.csv")
    assert cli(str(tmp_path / "gbk.csv"), "--out", str(tmp_path / "s.csv")) == 1
    err = capsys.readouterr().err
    assert "cannot decode it as utf-8" in err and "--encoding gbk" in err and "codec can't" not in err
    assert run(tmp_path / "gbk.csv", encoding="gbk")[0] == want
    assert run(tmp_path / "u16.csv")[0] == want  # the byte-order mark says UTF-16
    assert cli(str(tmp_path / "u8.csv"), "--encoding", "nope", "--out", "-") == 2


def test_small_usage_fixes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame(1000).to_csv(tmp_path / "x.csv", index=False)
    assert cli(str(tmp_path / "x.csv"), "--warmup", "1000", "--out", str(tmp_path / "s.csv")) == 1
    err = capsys.readouterr().err
    assert "1000 rows, but scoring needs more rows than the warm-up's 1000" in err
    assert cli(str(tmp_path / "x.csv"), "--columns", ",", "--out", str(tmp_path / "s.csv")) == 2
    assert "--columns: names no column" in capsys.readouterr().err
    assert cli(str(tmp_path / "x.csv"), "--columns", "a,a", "--out", str(tmp_path / "s.csv")) == 2
    assert not (tmp_path / "s.csv").exists()


# --- K: label columns -------------------------------------------------------------------------------


def test_label_columns_are_named_and_can_be_excluded(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    df = frame(1000, shift_at=700)
    df["anomaly"] = (df.index >= 700).astype(float)
    df["changepoint"] = (df.index == 700).astype(float)
    df.to_csv(tmp_path / "x.csv", sep=";", index=False)
    assert cli(str(tmp_path / "x.csv"), "--sep", ";", "--out", str(tmp_path / "s.csv")) == 0
    err = capsys.readouterr().err
    assert "columns: a, b, c, anomaly, changepoint" in err
    assert "only 0/1 in the warm-up: anomaly, changepoint" in err and "--exclude anomaly,changepoint" in err
    assert cli(str(tmp_path / "x.csv"), "--sep", ";", "--exclude", "anomaly,changepoint",
               "--out", str(tmp_path / "s.csv")) == 0
    err = capsys.readouterr().err
    assert "columns: a, b, c\n" in err and "0/1" not in err
    assert cli(str(tmp_path / "x.csv"), "--sep", ";", "--exclude", "nope", "--out", "-") == 2
    assert cli(str(tmp_path / "x.csv"), "--sep", ";", "--exclude", "a", "--columns", "b", "--out", "-") == 2
