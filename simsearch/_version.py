"""The version of simsearch, in one place (the package face re-exports it; hatch reads it)."""

__version__ = "0.1.0"
