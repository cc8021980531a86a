"""``zhizao analytics score``: online, and clear behaviour for gaps, constants, NaNs, unsorted input."""

from __future__ import annotations

import io
import warnings
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
    with pytest.raises(DataError, match="900 rows, but scoring needs more rows than the warm-up's 5000"):
        run(tmp_path / "x.csv", warmup=5000)
    df.loc[5, "time"] = "not a time"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="line 7"):
        run(tmp_path / "bad.csv")
    df = write(tmp_path / "y.csv")
    df.loc[:400, "b"] = np.nan
    df.to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(DataError, match="no numeric value in the 300 warm-up rows"):
        run(tmp_path / "y.csv", warmup=300, columns=["a", "b", "c"])  # named: refused; default: left out


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


# --- review fixes: output path, config validation, time column, exit codes, separators ---------------


def score_cli(*args: str) -> int:
    return main(["score", *args])


def test_cli_output_in_a_missing_directory_is_one_clear_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Like a missing input file (exit 1): a file-system problem, named, before any scoring."""
    write(tmp_path / "x.csv")
    out = tmp_path / "nodir" / "x.csv"
    assert score_cli(str(tmp_path / "x.csv"), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(out.parent) in err and "does not exist" in err
    assert score_cli(str(tmp_path / "x.csv"), "--out", str(tmp_path)) == 1  # a directory
    assert "is a directory" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_unknown_detector_in_config_is_a_config_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "x.csv")
    cfg = tmp_path / "spec.toml"
    cfg.write_text('detector = "pca"\n')
    assert score_cli(str(tmp_path / "x.csv"), "--config", str(cfg), "--out", str(tmp_path / "s.csv")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "detector:" in err and "'pca'" in err and "pca_t2q" in err
    assert not (tmp_path / "s.csv").exists()


def test_model_spec_validates_detector_and_params_when_loaded(tmp_path: Path) -> None:
    from analytics.scoring import ModelSpec
    from zhizao.config import load_config
    from zhizao.errors import ConfigError

    def problems(text: str) -> dict[str, str]:
        (tmp_path / "m.toml").write_text(text)
        with pytest.raises(ConfigError) as exc:
            load_config(ModelSpec, tmp_path / "m.toml")
        return dict(exc.value.problems)

    assert "choose from" in problems('detector = "pca"\n')["detector"]
    pca = 'detector = "pca_t2q"\n'
    msg = problems(pca + "detector_params = { variance = 0.9, alpha = 1 }\n")["detector_params"]
    assert "'alpha'" in msg and "variance, rel_floor, ref_quantile" in msg
    msg = problems(pca + "detector_params = { variance = 2 }\n")["detector_params"]
    assert "variance must be in (0, 1]" in msg
    # the default detector_params are robust_z's: say so when another detector refuses them
    assert "detector_params = {}" in problems('detector = "expected_power"\n')["detector_params"]
    (tmp_path / "ok.toml").write_text('detector = "pca_t2q"\n')
    assert load_config(ModelSpec, tmp_path / "ok.toml").detector == "pca_t2q"
    from pydantic import ValidationError
    with pytest.raises(ValidationError):
        ModelSpec(detector="nope")


def no_time_file(path: Path, n: int = 900) -> pd.DataFrame:
    df = write(path, n=n).drop(columns=["time"])
    df.to_csv(path, index=False)
    return df


def test_no_time_column_is_refused_not_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A first column of numbers is never taken as time (it used to be: 'b, c' scored, all rows
    'out of order', sorted by column a's values)."""
    no_time_file(tmp_path / "nots.csv")
    with pytest.raises(DataError, match="no time column") as exc:
        run(tmp_path / "nots.csv", warmup=300)
    assert "--time-col" in str(exc.value) and "--no-time" in str(exc.value) and "'a'" in str(exc.value)
    assert score_cli(str(tmp_path / "nots.csv"), "--out", str(tmp_path / "s.csv")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no time column" in err and not (tmp_path / "s.csv").exists()


def test_no_time_scores_rows_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_time_file(tmp_path / "nots.csv")
    out, summary = run(tmp_path / "nots.csv", warmup=300, no_time=True)
    assert summary.columns == ["a", "b", "c"] and summary.time_column is None  # type: ignore[attr-defined]
    assert summary.out_of_order_rows == 0 and summary.gaps == 0  # type: ignore[attr-defined]
    assert out["timestamp"].tolist() == list(range(900))
    assert out["is_anomaly"].iloc[720:].mean() > 0.95 and out["is_anomaly"].iloc[300:700].mean() < 0.05
    # the same scores as with the timestamps (1-s steps, in order)
    write(tmp_path / "x.csv")
    timed, _ = run(tmp_path / "x.csv", warmup=300)
    np.testing.assert_array_equal(out["score"].to_numpy(), timed["score"].to_numpy())
    assert score_cli(str(tmp_path / "nots.csv"), "--no-time", "--warmup", "300",
                     "--out", str(tmp_path / "s.csv")) == 0
    assert "time: none (--no-time)" in capsys.readouterr().err
    assert score_cli(str(tmp_path / "nots.csv"), "--no-time", "--time-col", "a", "--out", "-") == 2


def test_time_column_found_by_name_or_as_iso_datetimes_in_the_first_column(tmp_path: Path) -> None:
    df = write(tmp_path / "x.csv")
    df.rename(columns={"time": "Zeitstempel"}).to_csv(tmp_path / "first.csv", index=False)
    out, summary = run(tmp_path / "first.csv", warmup=300)
    assert summary.time_column == "Zeitstempel" and summary.columns == ["a", "b", "c"]  # type: ignore[attr-defined]
    assert out["timestamp"].iloc[0] == "2026-01-01T00:00:00Z"
    # a column named time may hold numbers: seconds (epoch or any numeric clock)
    df.assign(time=np.arange(900) + 1.7e9).to_csv(tmp_path / "epoch.csv", index=False)
    _, summary = run(tmp_path / "epoch.csv", warmup=300)
    assert summary.time_column == "time" and summary.columns == ["a", "b", "c"]  # type: ignore[attr-defined]


def test_usage_errors_exit_2_data_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "x.csv")
    x, out = str(tmp_path / "x.csv"), str(tmp_path / "s.csv")
    for args, text in ((["--columns", "a,zz"], "--columns: no column(s) ['zz']"),
                       (["--time-col", "nope"], "--time-col: no column 'nope'"),
                       (["--warmup", "0"], "--warmup: must be at least 2 rows"),
                       (["--max-gap", "0"], "--max-gap: must be > 0"),
                       (["--sep", ""], "--sep: must not be empty"),
                       (["--decimal", ","], "--decimal: ',' is also the field separator")):
        assert score_cli(x, *args, "--out", out) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and text in err, (args, err)
    assert score_cli(x, "--warmup", "5000", "--out", out) == 1  # the file is too short: data
    assert "more rows than the warm-up's 5000" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_separator_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "semi.csv", sep=";")
    with pytest.raises(DataError, match="try --sep ';'"):
        run(tmp_path / "semi.csv")
    write(tmp_path / "tab.csv", sep="\t")
    with pytest.raises(DataError, match="tab-separated"):
        run(tmp_path / "tab.csv")
    write(tmp_path / "x.csv")
    with pytest.raises(DataError, match="try --sep ','"):
        run(tmp_path / "x.csv", sep=";")
    assert score_cli(str(tmp_path / "semi.csv"), "--out", str(tmp_path / "s.csv")) == 1
    assert "--sep ';'" in capsys.readouterr().err


def test_decimal_commas_are_named_and_read_with_decimal(tmp_path: Path) -> None:
    df = write(tmp_path / "x.csv")
    df.to_csv(tmp_path / "dc.csv", index=False, sep=";", decimal=",")
    with pytest.raises(DataError, match=r"not numbers.*decimal commas\? pass --decimal ','"):
        run(tmp_path / "dc.csv", sep=";")
    with pytest.raises(DataError, match="--decimal ','"):
        run(tmp_path / "dc.csv", sep=";", columns=["c"])
    out, summary = run(tmp_path / "dc.csv", sep=";", decimal=",", warmup=300)
    dot, _ = run(tmp_path / "x.csv", warmup=300)
    assert summary.columns == ["a", "b", "c"]  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(out, dot)


def test_multi_character_separator_is_literal_and_quiet(tmp_path: Path) -> None:
    df = write(tmp_path / "x.csv")
    (tmp_path / "dc.csv").write_text(df.to_csv(index=False).replace(",", "::"))
    (tmp_path / "pp.csv").write_text(df.to_csv(index=False).replace(",", "||"))
    dot, _ = run(tmp_path / "x.csv", warmup=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' ParserWarning (python-engine fallback) leaked before
        for name, sep in (("dc.csv", "::"), ("pp.csv", "||")):  # '||' as a regex would match nothing
            out, summary = run(tmp_path / name, sep=sep, warmup=300)
            assert summary.columns == ["a", "b", "c"]  # type: ignore[attr-defined]
            pd.testing.assert_frame_equal(out, dot)
