"""Data: the `Recording` every loader returns, loaders, preprocessing and synthetic data."""

from emg_lens.data.recording import Recording

__all__ = ["Recording"]
