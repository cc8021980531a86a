"""``zhizao analytics score``: online, and clear behaviour for gaps, constants, NaNs, unsorted input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.cli import main
from analytics.errors import DataError
from analytics.scoring.csv_scorer import score_csv
from tests.analytics.conftest import normal_rows


def write(path: Path, n: int = 900, shift_at: int = 700, seed: int = 0, sep: str = ",") -> pd.DataFrame:
    X = normal_rows(n, 3, seed)
    X[shift_at:, 2] += 12
    ts = pd.date_range("2026-01-01", periods=n, freq="1s", tz="UTC")
    df = pd.DataFrame({"time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    df.to_csv(path, index=False, sep=sep)
    return df


def run(path: Path, **kw: object) -> tuple[pd.DataFrame, object]:
    buf = io.StringIO()
    summary = score_csv(path, buf, **kw)  # type: ignore[arg-type]
    return pd.read_csv(io.StringIO(buf.getvalue())), summary


def test_output_format_and_detection(tmp_path: Path) -> None:
    write(tmp_path / "in.csv")
    out, _ = run(tmp_path / "in.csv", warmup=300)
    assert list(out.columns) == ["timestamp", "score", "is_anomaly"]
    assert len(out) == 900 and out["timestamp"].iloc[0] == "2026-01-01T00:00:00Z"
    assert out["score"].between(0, 1).all() and set(out["is_anomaly"]) <= {0, 1}
    assert (out["score"].iloc[:300] == 0).all()
    assert out["is_anomaly"].iloc[720:].mean() > 0.95 and out["is_anomaly"].iloc[300:700].mean() < 0.05


def test_appending_future_rows_never_changes_earlier_scores(tmp_path: Path) -> None:
    df = write(tmp_path / "full.csv", n=900)
    df.iloc[:650].to_csv(tmp_path / "head.csv", index=False)
    head, _ = run(tmp_path / "head.csv", warmup=300)
    full, _ = run(tmp_path / "full.csv", warmup=300)
    pd.testing.assert_frame_equal(head, full.iloc[:650])


def test_online_under_gaps_nans_and_unsorted_input(tmp_path: Path) -> None:
    df = write(tmp_path / "x.csv", n=900)
    df.loc[[350, 351, 500], "b"] = np.nan
    t = pd.to_datetime(df["time"])
    t.iloc[600:] += pd.Timedelta(hours=1)
    df["time"] = t.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    shuffled = df.iloc[:800].sample(frac=1.0, random_state=3)
    shuffled.to_csv(tmp_path / "head.csv", index=False)
    full = pd.concat([shuffled, df.iloc[800:]])
    full.to_csv(tmp_path / "full.csv", index=False)
    head, _ = run(tmp_path / "head.csv", warmup=300)
    out, s2 = run(tmp_path / "full.csv", warmup=300)
    pd.testing.assert_frame_equal(head, out.iloc[:800])
    assert s2.out_of_order_rows > 0 and s2.imputed_cells["b"] == 3 and s2.gaps == 1  # type: ignore[attr-defined]
    assert out["timestamp"].is_monotonic_increasing


def test_single_column_and_semicolon(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", sep=";")
    out, summary = run(tmp_path / "x.csv", sep=";", columns=["c"], warmup=300)
    assert summary.columns == ["c"]  # type: ignore[attr-defined]
    assert out["is_anomaly"].iloc[720:].mean() > 0.95


def test_constant_column_stays_and_a_change_in_it_scores_high(tmp_path: Path) -> None:
    df = write(tmp_path / "x.csv", shift_at=10_000)
    df["stuck"] = 5.0
    df.loc[800:, "stuck"] = 5.5
    df.to_csv(tmp_path / "x.csv", index=False)
    out, summary = run(tmp_path / "x.csv", warmup=300)
    assert summary.constant_columns == ["stuck"]  # type: ignore[attr-defined]
    assert out["is_anomaly"].iloc[300:790].mean() < 0.05 and out["is_anomaly"].iloc[820:].all()


def test_clear_errors(tmp_path: Path) -> None:
    df = write(tmp_path / "x.csv")
    with pytest.raises(DataError, match="--columns"):
        run(tmp_path / "x.csv", columns=["nope"])
    with pytest.raises(DataError, match="warm-up alone needs"):
        run(tmp_path / "x.csv", warmup=5000)
    df.loc[5, "time"] = "not a time"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="line 7"):
        run(tmp_path / "bad.csv")
    df = write(tmp_path / "y.csv")
    df.loc[:400, "b"] = np.nan
    df.to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(DataError, match="no numeric value in the 300 warm-up rows"):
        run(tmp_path / "y.csv", warmup=300)


def test_cli_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "x.csv")
    rc = main(["score", str(tmp_path / "x.csv"), "--time-col", "time", "--columns", "a,c", "--warmup", "300",
               "--out", str(tmp_path / "s.csv")])
    assert rc == 0
    assert pd.read_csv(tmp_path / "s.csv").shape == (900, 3)
    assert "rows scored: 900" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.csv")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_cli_scores_a_skab_file(skab_dir: Path, tmp_path: Path) -> None:
    rc = main(["score", str(skab_dir / "valve1" / "1.csv"), "--sep", ";", "--time-col", "datetime",
               "--columns",
               "Accelerometer1RMS,Accelerometer2RMS,Current,Pressure,Voltage,Volume Flow RateRMS",
               "--out", str(tmp_path / "s.csv")])
    assert rc == 0
    out = pd.read_csv(tmp_path / "s.csv")
    truth = pd.read_csv(skab_dir / "valve1" / "1.csv", sep=";")["anomaly"]
    pred = out["is_anomaly"].to_numpy()[400:]
    y = truth.to_numpy()[400:]
    assert (pred[y == 1]).mean() > 0.6 and (pred[y == 0]).mean() < 0.2
