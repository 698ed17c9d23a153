"""Shared fixtures: a fresh tradeloop home per test and the real market data in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradeloop.config import Settings

REPO = Path(__file__).resolve().parents[1]
MARKET = Path(os.environ.get("TRADELOOP_MARKET_DATA", REPO.parent / "shared" / "data" / "market"))


def require(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing, but fail under CI=true (CI must have everything)."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"missing under CI: {why}")
    pytest.skip(why)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(tmp_path / "home")


@pytest.fixture(scope="session")
def market() -> Path:
    require(MARKET.is_dir(), f"real market data not found at {MARKET}")
    return MARKET


def market_file(name: str) -> Path:
    path = MARKET / name
    require(path.is_file(), f"{path} not found")
    return path
