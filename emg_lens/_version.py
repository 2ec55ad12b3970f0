"""The version of emg_lens: the one place it is written (``pyproject.toml`` reads it here,
``emg_lens.__version__`` re-exports it)."""

__version__ = "0.1.0"
