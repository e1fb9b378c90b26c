"""SmartMarket: ML-driven crypto trading signals, measured and reproducible."""

__version__ = "0.1.0"
__all__ = ["__version__"]
