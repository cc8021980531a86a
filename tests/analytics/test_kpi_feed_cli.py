"""``zhizao analytics kpi-feed``: the KPI feed's command; a bad or missing file is a clear error (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.cli import main
from analytics.kpi_feed.config import TOKEN_ENV, load_feed_config


def test_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kpi-feed", "--help"]) == 0
    assert "usage: zhizao analytics kpi-feed" in capsys.readouterr().out
    assert main(["kpi-feed"]) == 2
    assert "--config" in capsys.readouterr().err


def test_a_missing_plant_file_is_named_without_a_traceback(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kpi.toml").write_text('plant = "plant.toml"\n')
    feed = tmp_path / "feed.toml"
    feed.write_text('kpi_config = "kpi.toml"\nscopes = ["plant"]\n[storage]\nbackend = "influxdb"\n')
    assert main(["kpi-feed", "--config", str(feed)]) == 2
    err = capsys.readouterr().err
    assert "plant.toml" in err and "cannot read file" in err and "Traceback" not in err


def test_a_bad_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "feed.toml"
    feed.write_text('kpi_config = "kpi.toml"\nscopes = ["plant"]\ninterval_sec = 5\n')
    assert main(["kpi-feed", "--config", str(feed)]) == 2
    assert "interval_sec" in capsys.readouterr().err


def test_the_influx_token_can_come_from_the_environment(tmp_path: Path) -> None:
    feed = tmp_path / "feed.toml"
    feed.write_text('kpi_config = "kpi.toml"\nscopes = ["plant"]\n[storage]\nbackend = "influxdb"\n')
    assert load_feed_config(feed, env={}).storage.influxdb.token is None
    assert load_feed_config(feed, env={TOKEN_ENV: "s3cret"}).storage.influxdb.token == "s3cret"
