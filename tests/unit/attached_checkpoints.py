"""A user's own attention model as the studies and commands meet it through the builder route:
attached with `emg_lens.models.attach` and saved per subject with the data it is scored on, and
the user's ``models.py``, whose ``build_modules(info)`` rebuilds the module no ``config.json``
can (run only with consent: ``--modules models.py:build_modules --allow-code``).

``USER_CODE`` is that file; the checkpoints are built from the very class it defines, so the
builder a study runs gives the module the weights were saved from. The data are
`tests.unit.torch_encoder_checkpoints`'s: small synthetic sEMG x ACC recordings, one token per
channel.
"""

from __future__ import annotations

from pathlib import Path

import torch

from emg_lens.checkpoints import save_checkpoint
from emg_lens.layout import TokenLayout
from emg_lens.models import attach
from tests.unit.torch_encoder_checkpoints import MODALITIES, N_SAMPLES, source

USER_CODE = '''
"""My own attention model, and how emg_lens rebuilds it for a checkpoint."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, n_samples, d=16, heads=2, n_classes=12):
        super().__init__()
        self.heads, self.embed, self.qkv = heads, nn.Linear(n_samples, d), nn.Linear(d, 3 * d)
        self.out, self.head = nn.Linear(d, d), nn.Linear(d, n_classes)

    def forward(self, x):
        h = self.embed(x)
        b, n, d = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) / 8 ** 0.5).softmax(-1)
        h = h + self.out((attn @ v).transpose(1, 2).reshape(b, n, d))
        return self.head(h.mean(1))


def build_modules(info):
    return {"model": Net(info["config"]["n_samples"])}
'''


def write_user_code(folder: Path, name: str = "models.py") -> Path:
    """The user's ``models.py`` (`USER_CODE`) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(USER_CODE)
    return path


def save_subjects(root: Path, subjects=(1,)) -> Path:
    """One attached checkpoint of `USER_CODE`'s ``Net`` per subject under ``root``
    (``subject_<N>/``, its weights seeded by ``N - 1``), each with the data source it is scored
    on."""
    names: dict = {}
    exec(compile(USER_CODE, "models.py", "exec"), names)
    layout = TokenLayout.channel_tokens(MODALITIES, cls_token=False)
    for subject in subjects:
        torch.manual_seed(subject - 1)
        model = attach(names["Net"](N_SAMPLES).eval(), layout=layout, n_samples=N_SAMPLES)
        metadata = {"subject": subject, "data_source": source()}
        save_checkpoint(model, root / f"subject_{subject}", metadata=metadata)
    return root
