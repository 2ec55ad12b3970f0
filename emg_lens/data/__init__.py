"""Data: the `Recording` every loader returns, loaders, preprocessing and synthetic data; what
each dataset is lives in one place, `emg_lens.data.registry`."""

from emg_lens.data.recording import Recording

__all__ = ["Recording"]
