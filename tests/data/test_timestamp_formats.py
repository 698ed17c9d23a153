"""Timestamps in the formats exports use, parsed by inference and checked against hand-written
UTC times; a day/month order no value settles is refused with the column named."""

from __future__ import annotations

import pandas as pd
import pytest

from tradeloop.bars.loaders import parse_timestamp, parse_timestamps
from tradeloop.errors import UnusableFile


def _utc(*texts: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(t, tz="UTC") for t in texts]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2023-01-02 01:00:00 PM", "2023-01-02 11:30:00 AM"], _utc("2023-01-02 13:00", "2023-01-02 11:30")),
        (["01/02/2023 01:00 PM", "01/13/2023 12:00 AM"], _utc("2023-01-02 13:00", "2023-01-13 00:00")),
        (["02.01.2023 13:00", "25.01.2023 09:15"], _utc("2023-01-02 13:00", "2023-01-25 09:15")),
        (["Jan 2, 2023", "Feb 28, 2023"], _utc("2023-01-02", "2023-02-28")),
        (
            ["2023-01-02T13:00:00+01:00", "2023-01-02T14:00:00+01:00"],
            _utc("2023-01-02 12:00", "2023-01-02 13:00"),
        ),
        ([20230102, 20230103], _utc("2023-01-02", "2023-01-03")),
        ([1672664400, 1672668000], _utc("2023-01-02 13:00", "2023-01-02 14:00")),
        ([1672664400000, 1672668000000], _utc("2023-01-02 13:00", "2023-01-02 14:00")),
    ],
)
def test_common_export_formats_parse_to_the_hand_written_utc_time(values, expected):
    assert list(parse_timestamps(pd.Series(values), "f.csv")) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-01-02T13:00:00Z", "2023-01-02 13:00"),
        ("2023-01-02 13:00:00", "2023-01-02 13:00"),
        ("2023-01-02 1:05:00 PM", "2023-01-02 13:05"),
        ("2023-01-02T14:00:00+01:00", "2023-01-02 13:00"),
        (1672664400, "2023-01-02 13:00"),
        (1672664400000, "2023-01-02 13:00"),
        ("1672664400000", "2023-01-02 13:00"),
        (1672664400000000000, "2023-01-02 13:00"),
        (20230102, "2023-01-02"),
        ("Jan 2, 2023", "2023-01-02"),
        ("13/01/2023 09:00", "2023-01-13 09:00"),
    ],
)
def test_one_live_value_reads_as_the_hand_written_utc_time(value, expected):
    assert parse_timestamp(value, "line") == pd.Timestamp(expected, tz="UTC")


def test_one_live_value_that_reads_two_ways_is_refused():
    with pytest.raises(UnusableFile, match="ambiguous date order"):
        parse_timestamp("03/04/2023 10:00", "line")


def test_a_day_above_twelve_proves_day_first_for_the_whole_column():
    got = parse_timestamps(pd.Series(["03/04/2023 10:00", "13/04/2023 10:00"]), "f.csv")
    assert list(got) == _utc("2023-04-03 10:00", "2023-04-13 10:00")


def test_a_column_no_value_settles_is_refused_naming_the_column():
    with pytest.raises(UnusableFile, match=r"column 'Time'.*ambiguous date order.*03/04/2023"):
        parse_timestamps(pd.Series(["03/04/2023 10:00", "05/04/2023 10:00"]), "f.csv", "Time")


def test_an_unparsable_value_becomes_nat_for_quarantine_not_a_guess():
    got = parse_timestamps(pd.Series(["2023-01-02 13:00", "2023-01-02 14:00", "not a time"]), "f.csv")
    assert got.isna().tolist() == [False, False, True]
