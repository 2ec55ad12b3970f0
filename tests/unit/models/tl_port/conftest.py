"""The models TransformerLens's own tests are ported onto (issue 47, section 1), one per tier:
native (IsoNet, TinyMyo with RoPE, the hierarchical model with stems), converted (a post-LN
``nn.TransformerEncoder``, LaBraM with q/k norms, CBraMod with its criss-cross heads) and attached
(a hand-written attention model). Each is built once per session; every test gets it with no
hook and every hook flag off, and leaves it so.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from emg_lens.config import HOOK_FLAGS
from emg_lens.models import attach
from tests.tiny import perturb_biases
from tests.unit.models import attached_models
from tests.unit.models.encoders import MODELS

NATIVE = ("isonet", "tinymyo", "hierarchical")
CONVERTED = ("torch_post_ln", "braindecode_labram", "braindecode_cbramod")
ATTACHED = ("attached_qkv",)
WEIGHTED = NATIVE + CONVERTED  # the tiers with TransformerLens weights and emg_lens blocks
TIERS = WEIGHTED + ATTACHED

_BUILT: dict[str, torch.nn.Module] = {}


def _build(name: str) -> torch.nn.Module:
    if name == "attached_qkv":
        net = attached_models.build("qkv")
        model = attach(net, layout=attached_models.LAYOUT, n_samples=attached_models.N_SAMPLES)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MODELS[name]()
        perturb_biases(model)
    return model.eval()


def get_model(name: str) -> torch.nn.Module:
    """The session's model ``name``, hooks removed and every hook flag off."""
    if name not in _BUILT:
        _BUILT[name] = _build(name)
    model = _BUILT[name]
    model.reset_hooks(including_permanent=True)
    for flag in HOOK_FLAGS:
        if getattr(model.cfg, flag, False):
            getattr(model, f"set_{flag}")(False)
    return model


@pytest.fixture
def tier_model(request):
    """``get_model(request.param)``, cleaned again afterwards."""
    model = get_model(request.param)
    yield model
    get_model(request.param)


def probe_hook(model) -> str:
    """A hook point every tier has on its residual stream (or its input)."""
    for name in ("blocks.0.hook_resid_post", "stems.emg.blocks.0.hook_resid_post"):
        if name in model.hook_dict:
            return name
    return "hook_input"
