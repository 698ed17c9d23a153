"""tradeloop: market-prediction models served on Kubernetes and kept fresh.

The shared core: bar schema and validation, features, labels, splits, config and errors. The
``training`` and ``services`` packages build on it and never on each other.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
