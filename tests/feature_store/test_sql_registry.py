"""The SQL registry on a real PostgreSQL server (the cluster setting, TRADELOOP_REGISTRY_URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.feature_store.conftest import SERIES, make_home
from tradeloop import feature_store as fs


def test_apply_materialize_and_read_through_a_postgres_registry(postgres_url: str, tmp_path: Path) -> None:
    env = {"TRADELOOP_REGISTRY_URL": postgres_url}
    settings = make_home(tmp_path)
    applied = fs.apply(settings, env)
    assert "FeatureService:tradeloop_v1" in applied
    assert not (settings.home / "feast" / "registry.db").exists(), "registry must live in Postgres"

    # A second process (here: a fresh FeatureStore) sees the registered objects in the database.
    store = fs.open_store(settings, env)
    assert store.config.registry.registry_type == "sql"
    assert {v.name for v in store.list_feature_views()} == {"bar_features", "bar_window"}
    assert store.get_feature_service(fs.FEATURE_SERVICE).name == fs.FEATURE_SERVICE

    fs.materialize(store, start=datetime(2000, 1, 1, tzinfo=UTC))
    row = fs.read_online(fs.open_store(settings, env), [SERIES])[0]
    assert row.event_ts is not None
    assert row.window is not None

    # Re-applying is idempotent: same objects, no duplicates.
    assert fs.apply(settings, env) == applied
    assert len(fs.open_store(settings, env).list_feature_views()) == 2
