"""A user's ``nn.TransformerEncoder`` model as the studies and commands meet it (issue 24):
converted with `from_torch_encoder` and saved per subject with the data it is scored on, and
the user's ``models.py``, whose ``build_modules(info)`` rebuilds the tokenizer and readout that
no ``config.json`` can (run only with consent).

``USER_CODE`` is that file; the checkpoints are built from the very classes it defines, so the
builder a study runs gives modules of the architecture the weights were saved from.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from torch import nn

from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.layout import TokenLayout
from emg_lens.models import from_torch_encoder
from tests.tiny import adam_steps

USER_CODE = textwrap.dedent(
    '''
    """My model's own modules, and how emg_lens rebuilds them for a checkpoint."""
    import torch
    from torch import nn


    class ChannelTokens(nn.Module):
        """One token per channel from its samples, plus a learned position per channel."""

        def __init__(self, n_channels, n_samples, d_model):
            super().__init__()
            self.proj = nn.Linear(n_samples, d_model)
            self.pos = nn.Parameter(torch.randn(n_channels, d_model) * 0.1)

        def forward(self, x):
            return self.proj(x) + self.pos


    class MeanReadout(nn.Module):
        def __init__(self, d_model, n_classes):
            super().__init__()
            self.linear = nn.Linear(d_model, n_classes)

        def forward(self, tokens):
            return self.linear(tokens.mean(1))


    def build_modules(info):
        cfg = info["config"]
        n_channels = sum(cfg["modalities"].values())
        return {
            "embed": ChannelTokens(n_channels, cfg["n_samples"], cfg["d_model"]),
            "readout": MeanReadout(cfg["d_model"], cfg["n_classes"]),
        }
    '''
)
MARKER = "marker.txt"
MARKING = '\nfrom pathlib import Path\nPath(__file__).with_name("marker.txt").write_text("ran")\n'
"""Appended to a study folder's copy of ``USER_CODE``: it leaves ``marker.txt`` when run."""
MODALITIES = {"emg": 12, "acc": 36}  # the synthetic sEMG x ACC data: 48 channel tokens
N_SAMPLES, D_MODEL = 200, 16
FINE_TUNE_STEPS = 40


def source() -> dict:
    """The data every subject is scored on: small synthetic sEMG x ACC recordings."""
    return data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=2, movement_seconds=1.0),
        preprocess=PreprocessSpec(segment=(0.25, 1.0), step=200),
    )


def user_classes() -> dict:
    """``USER_CODE``'s names, as the user's own scripts import them."""
    names: dict = {}
    exec(compile(USER_CODE, "models.py", "exec"), names)
    return names


def converted(seed: int, classes: dict | None = None):
    """A user's tokenizer, ``nn.TransformerEncoder`` (post-LN, 2 layers) and readout,
    converted."""
    classes = classes or user_classes()
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(D_MODEL, nhead=2, dim_feedforward=32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    n_channels = sum(MODALITIES.values())
    return from_torch_encoder(
        encoder,
        embed=classes["ChannelTokens"](n_channels, N_SAMPLES, D_MODEL),
        readout=classes["MeanReadout"](D_MODEL, 12),
        layout=TokenLayout.channel_tokens(MODALITIES, cls_token=False),
        n_samples=N_SAMPLES,
    )


def save_subjects(root: Path, subjects=(1, 2), *, train: bool = False) -> Path:
    """One converted checkpoint per subject under ``root`` (``subject_<N>/``), each with the
    data source it is scored on; with ``train``, fine-tuned briefly on its subject's data."""
    classes = user_classes()
    for subject in subjects:
        model = converted(subject, classes)
        if train:
            # a few Adam steps, so that its attention matters (discovery refuses a model
            # whose cut edges carry nothing)
            adam_steps(model, load_subject(source(), subject), FINE_TUNE_STEPS)
        metadata = {"subject": subject, "data_source": source()}
        save_checkpoint(model, root / f"subject_{subject}", metadata=metadata)
    return root


def write_user_code(folder: Path, *, marking: bool = True, name: str = "models.py") -> Path:
    """The user's ``models.py`` in ``folder``; with ``marking`` it leaves `MARKER` when run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(USER_CODE + (MARKING if marking else ""))
    return path
