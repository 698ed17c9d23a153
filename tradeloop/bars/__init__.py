"""Market bars: canonical schema, loaders, validation with quarantine, storage and resampling."""

from tradeloop.bars.importer import SeriesReport, import_file
from tradeloop.bars.loaders import load_bars
from tradeloop.bars.resample import resample_bars
from tradeloop.bars.schema import TIMEFRAMES, Timeframe, parse_series_id, series_id
from tradeloop.bars.store import BarStore, QuarantineStore
from tradeloop.bars.validate import Reason, validate_bars

__all__ = [
    "TIMEFRAMES",
    "BarStore",
    "QuarantineStore",
    "Reason",
    "SeriesReport",
    "Timeframe",
    "import_file",
    "load_bars",
    "parse_series_id",
    "resample_bars",
    "series_id",
    "validate_bars",
]
