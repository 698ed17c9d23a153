"""The Feast repository end to end on real data: apply, materialize, online reads, training sets.

Runs once on the embedded default (file registry + SQLite) and once on a real redis-server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from typer.testing import CliRunner

from tests.feature_store.conftest import SERIES, make_home
from tests.feature_store.helpers import NAMES, batch_features, online_vs_batch
from tradeloop import feature_store as fs
from tradeloop.cli.main import app
from tradeloop.config import Settings
from tradeloop.errors import UnknownSeries
from tradeloop.features import spec
from tradeloop.features.parity import TOLERANCE
from tradeloop.features.recent import offline_features
from tradeloop.splits import ended_by
from tradeloop.training_set import training_set
from training.datasets import load_dataset


@dataclass(frozen=True)
class Home:
    """An applied, materialized home and the environment that selects its stores."""

    settings: Settings
    environ: dict[str, str]

    def store(self) -> FeatureStore:
        return fs.open_store(self.settings, self.environ)


def _applied_home(tmp: Path, redis_url: str | None) -> Home:
    env = {"TRADELOOP_REDIS_URL": redis_url} if redis_url else {}
    settings = make_home(tmp)
    fs.apply(settings, env)
    fs.materialize(fs.open_store(settings, env), start=datetime(2000, 1, 1, tzinfo=UTC))
    return Home(settings, env)


@pytest.fixture(scope="module")
def sqlite_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """Embedded default: file registry + SQLite."""
    return _applied_home(tmp_path_factory.mktemp("sqlite"), None)


@pytest.fixture(scope="module")
def redis_home(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Home:
    """The same on a real redis-server."""
    return _applied_home(tmp_path_factory.mktemp("redis"), redis_url)


@pytest.fixture(params=["sqlite_home", "redis_home"])
def home(request: pytest.FixtureRequest) -> Home:
    """Online-store tests run on both stores."""
    return request.getfixturevalue(request.param)


def test_online_read_is_the_newest_offline_row_with_its_window(home: Home) -> None:
    row = fs.read_online(home.store(), [SERIES])[0]
    offline = offline_features(home.settings, *SERIES.split(":"))
    last = offline.iloc[-1]
    assert row.event_ts == last["ts"].to_pydatetime() == row.window_ts
    assert [row.values[n] for n in NAMES] == pytest.approx([float(last[n]) for n in NAMES], rel=1e-6)
    assert row.window is not None
    assert row.window.shape == (spec.WINDOW * len(spec.CHANNELS),)
    assert online_vs_batch(row, batch_features()) <= TOLERANCE
    assert row.age_s() > 0


def test_reader_returns_what_feast_get_online_features_returns(home: Home) -> None:
    """The fast read paths decode Feast's storage themselves; they must agree with Feast."""
    store = home.store()
    (row,) = fs.OnlineReader(store).read([SERIES])
    expected = store.get_online_features(
        features=list(fs.FEATURE_REFS), entity_rows=[{"series_id": SERIES}]
    ).to_dict(include_event_timestamps=True)
    assert row.values == {n: pytest.approx(expected[n][0], rel=0, abs=0) for n in row.values}
    np.testing.assert_array_equal(row.window, np.asarray(expected["window"][0], dtype=np.float32))
    assert row.event_ts.timestamp() == expected[f"{NAMES[0]}__ts"][0]


def test_unknown_series_is_a_clear_error_not_empty_values(home: Home) -> None:
    with pytest.raises(UnknownSeries, match="NOPE:1h"):
        fs.read_online(home.store(), ["NOPE:1h"])


def test_historical_features_never_come_from_after_the_row_timestamp(sqlite_home: Home) -> None:
    offline = offline_features(sqlite_home.settings, *SERIES.split(":")).set_index("ts")
    stamps = offline.index[200:240]
    # Each row asks half a bar after a bar's open: the answer must be that bar, never the next.
    rows = pd.DataFrame({"series_id": SERIES, "event_timestamp": stamps + pd.Timedelta(minutes=30)})
    got = fs.historical_features(sqlite_home.store(), rows).sort_values("event_timestamp")
    assert len(got) == len(rows)
    for event_ts, ret_1 in zip(got["event_timestamp"], got["ret_1"], strict=True):
        source = offline.index[offline.index <= event_ts][-1]
        assert ret_1 == pytest.approx(float(offline.loc[source, "ret_1"]), rel=1e-6)
        assert source <= event_ts < source + pd.Timedelta(hours=1)
    # A row before the first feature row gets nothing rather than a later value.
    early = pd.DataFrame(
        {"series_id": [SERIES], "event_timestamp": [offline.index[0] - pd.Timedelta(hours=1)]}
    )
    got = fs.historical_features(sqlite_home.store(), early)
    assert got.empty or got[NAMES].isna().all(axis=None)


def test_training_set_is_point_in_time_and_purged(sqlite_home: Home) -> None:
    offline = offline_features(sqlite_home.settings, *SERIES.split(":")).set_index("ts")
    start, end = offline.index[-300], offline.index[-100]
    data = training_set(sqlite_home.settings, [SERIES], horizon=3, test_fraction=0.2, start=start, end=end)
    frame, split = data.frame, data.split
    assert len(frame) == 201
    assert {"fwd_return", "direction", *NAMES} <= set(frame.columns)
    sample = frame.iloc[::7]
    assert np.allclose(sample["rsi_14"], offline.loc[sample["event_timestamp"], "rsi_14"], rtol=1e-6)
    train_end = frame.loc[split.train, "event_timestamp"].max()
    test_start = frame.loc[split.test, "event_timestamp"].min()
    assert train_end + 3 * pd.Timedelta(hours=1) < test_start  # labels of train rows end before test
    assert split.purged.sum() == 3


def test_feast_training_set_and_the_trainer_give_identical_rows_values_and_purge(sqlite_home: Home) -> None:
    """One purge rule, two paths: Feast's point-in-time set and the trainer's direct Parquet rows."""
    symbol, timeframe = SERIES.split(":")
    horizon = 3
    data = load_dataset(sqlite_home.settings, [(symbol, timeframe)], window=spec.WINDOW, horizon=horizon)
    start = pd.Timestamp(data.ts[-260], tz="UTC")
    end = pd.Timestamp(data.ts[-60], tz="UTC")
    cutoff = pd.Timestamp(data.ts[-110], tz="UTC")
    feast = training_set(sqlite_home.settings, [SERIES], horizon=horizon, cutoff=cutoff, start=start, end=end)
    frame = feast.frame
    mine = (data.ts >= np.datetime64(start.tz_localize(None))) & (
        data.ts <= np.datetime64(end.tz_localize(None))
    )
    assert len(frame) == int(mine.sum()) == 201
    ts = (
        pd.DatetimeIndex(frame["event_timestamp"])
        .tz_convert("UTC")
        .tz_localize(None)
        .to_numpy("datetime64[ns]")
    )
    np.testing.assert_array_equal(ts, data.ts[mine])
    np.testing.assert_array_equal(frame["fwd_return"].to_numpy(), data.y[mine])
    ends = pd.DatetimeIndex(frame["label_end"]).tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
    np.testing.assert_array_equal(ends, data.label_end[mine])
    idx = np.flatnonzero(mine)
    for name in NAMES:
        np.testing.assert_array_equal(
            frame[name].to_numpy(np.float32), data.indicator(name, idx).astype(np.float32)
        )
    # The same rows train / test at the same cut on both paths.
    np.testing.assert_array_equal(feast.split.train, ended_by(data.label_end[mine], cutoff))
    np.testing.assert_array_equal(feast.split.test, data.ts[mine] >= np.datetime64(cutoff.tz_localize(None)))
    # Rows t with the close of bar t+h after the cut's open: t = c-h .. c-1, exactly h rows.
    assert feast.split.purged.sum() == horizon


def test_cli_apply_materialize_and_get(sqlite_home: Home) -> None:
    runner = CliRunner()
    base = ["--home", str(sqlite_home.settings.home), "--json"]
    applied = runner.invoke(app, [*base, "features", "apply"])
    assert applied.exit_code == 0, applied.output
    assert "FeatureView:bar_window" in json.loads(applied.stdout)["applied"]
    mat = runner.invoke(app, [*base, "features", "materialize", "--incremental"])
    assert mat.exit_code == 0, mat.output
    got = runner.invoke(app, [*base, "features", "get", *SERIES.split(":")])
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)
    assert data["series"] == SERIES
    assert data["age_s"] > 0
    assert len(data["window"]) == spec.WINDOW * len(spec.CHANNELS)
    again = runner.invoke(app, [*base, "features", "materialize"])  # no options: incremental to now
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["incremental"] is True


def test_the_feast_cli_itself_applies_the_repository(sqlite_home: Home, tmp_path: Path) -> None:
    env = {**os.environ, **fs.feast_environment(sqlite_home.settings, {})}
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run(
        [str(feast), "-c", str(fs.REPO_DIR), "apply"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    views = {v.name for v in sqlite_home.store().list_feature_views()}
    assert views == {"bar_features", "bar_window"}
    assert not list(fs.REPO_DIR.glob("data")), "feast apply must not write into the repository"
