"""The hooked biosignal encoders."""

from emg_lens.models.base import HookedEncoder
from emg_lens.models.isonet import IsoNet

__all__ = ["HookedEncoder", "IsoNet"]
