"""Small seeded models and random windows for them, as tests across the folders build them: a
tiny IsoNet (`tiny_isonet`) and a small TinyMyo's config (`tinymyo_config`), `perturb_biases`,
a few Adam steps (`adam_steps`), a subject of random windows for a model (`tiny_subject`,
`subject_for`), the two-class windows the training-study tests train on
(`two_class_subjects`), checkpoints on the DB2 layout (`db2_checkpoint`) and a models folder
for the command line (`synthetic_checkpoint`), and the two interventions most study tests cut
(`uni_and_cross`). Every subject is made by `SubjectData.from_windows`."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from emg_lens import EncoderConfig
from emg_lens.data.preprocess import SubjectData
from emg_lens.models import IsoNet

Labels = Literal["cycle", "random"]


def perturb_biases(model: torch.nn.Module) -> None:
    """Give biases and LayerNorm weights non-trivial values, so tests that compare two
    computations cannot pass just because a bias or scale is zero or one."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b") or leaf == "w":
                param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


TINYMYO_SIZES = {"d_model": 16, "d_head": 4, "n_heads": 4, "d_mlp": 32, "n_layers": 2}
"""A small TinyMyo: 2 layers of 4 heads of width 4."""


def tinymyo_config(
    modalities: int | dict[str, int], samples: int, **overrides: Any
) -> EncoderConfig:
    """The ``tinymyo`` preset at `TINYMYO_SIZES` over ``modalities`` (a count: that many sEMG
    channels) and windows of ``samples``; ``overrides`` (any field, sizes included) last."""
    if isinstance(modalities, int):
        modalities = {"emg": modalities}
    settings = {**TINYMYO_SIZES, "modalities": modalities, "n_samples": samples, **overrides}
    return EncoderConfig.preset("tinymyo", **settings)


def adam_steps(model: torch.nn.Module, data: SubjectData, steps: int, batch_size: int = 32) -> None:
    """``steps`` Adam steps (lr 3e-3) on batches of ``batch_size`` of ``data``'s training
    windows drawn with a seeded generator, the model in training mode; it is left in eval
    mode. A brief training that makes a converted model's attention matter."""
    x = torch.as_tensor(data.X_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train).long()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (batch_size,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


def random_windows(
    model: Any, n: int, *, seed: int, labels: Labels = "cycle"
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` standard-normal float32 windows of ``model``'s input shape drawn from
    ``np.random.default_rng(seed)``, and their classes: ``0, 1, ..., n_classes - 1, 0, ...``
    (``"cycle"``) or drawn from the same generator after the windows (``"random"``)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, *model.input_shape)).astype(np.float32)
    n_classes = model.cfg.n_classes
    y = np.arange(n) % n_classes if labels == "cycle" else rng.integers(0, n_classes, n)
    return X, y


def subject_for(
    model: Any,
    n: int,
    *,
    seed: int = 0,
    labels: Labels = "cycle",
    train: bool = True,
    subject: int = 1,
    repetitions: tuple[int, int] = (1, 2),
) -> SubjectData:
    """`random_windows` as one subject's test windows for ``model`` (its classes are
    ``range(n_classes)``), and the same windows as its training windows (none unless
    ``train``)."""
    X, y = random_windows(model, n, seed=seed, labels=labels)
    return SubjectData.from_windows(
        dict(model.cfg.modalities),
        (X, y),
        (X, y) if train else None,
        subject=subject,
        classes=list(range(model.cfg.n_classes)),
        repetitions=repetitions,
    )


def tiny_isonet(seed: int = 0, *, perturb: bool = False, **overrides: Any) -> IsoNet:
    """An untrained IsoNet of the tiny preset (2 layers, 4 heads, 2 sEMG + 4 ACC channels of 8
    samples, 4 classes) seeded with ``seed``, in eval mode; ``perturb``: `perturb_biases`."""
    model = IsoNet(EncoderConfig.preset("tiny", seed=seed, **overrides))
    if perturb:
        perturb_biases(model)
    return model.eval()


def uni_and_cross() -> list[dict[str, str]]:
    """A study's ``interventions``: the unimodal and the cross-modal edges cut (a new list)."""
    return [{"name": "uni", "edges": "unimodal"}, {"name": "cross", "edges": "cross_modal"}]


def db2_checkpoint(
    models: Any, subject: int, source: Any, *, seed: int | None = None, perturb: bool = False,
    **metadata: Any,
) -> IsoNet:  # fmt: skip
    """An untrained tiny IsoNet on the DB2 layout (12 sEMG + 36 ACC channels of 200 samples,
    12 classes; weights large enough, ``init_range=0.5``, that cutting edges moves the margin),
    seeded with ``seed`` (default ``subject``), saved as ``models/subject_<subject>`` with
    ``source`` as its data source and ``metadata``; returns the model (`tiny_isonet`)."""
    from emg_lens.checkpoints import save_checkpoint

    model = tiny_isonet(
        subject if seed is None else seed, perturb=perturb, modalities={"emg": 12, "acc": 36},
        n_samples=200, n_classes=12, init_range=0.5,
    )  # fmt: skip
    metadata = {"subject": subject, "data_source": source, **metadata}
    save_checkpoint(model, models / f"subject_{subject}", metadata=metadata)
    return model


def synthetic_checkpoint(folder: Any, seed: int = 1) -> Any:
    """`db2_checkpoint` of subject 1 in ``folder``, one subject of short synthetic recordings
    its data source: a models folder the command line's discovery reads. Returns ``folder``."""
    from emg_lens.data.datasets import data_source
    from emg_lens.data.preprocess import PreprocessSpec
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec

    source = data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=1, movement_seconds=1.0),
        preprocess=PreprocessSpec(segment=(0.25, 1.0), step=200),
    )
    db2_checkpoint(folder, 1, source, seed=seed)
    return folder


def tiny_subject(
    seed: int = 0,
    n_windows: int = 8,
    *,
    perturb: bool = False,
    labels: Labels = "cycle",
    train: bool = True,
    subject: int = 1,
    repetitions: tuple[int, int] = (1, 2),
    **overrides: Any,
) -> tuple[IsoNet, SubjectData]:
    """`tiny_isonet` (``seed``, ``perturb``, config ``overrides``) and `subject_for` it with
    ``n_windows`` windows drawn from the same ``seed``."""
    model = tiny_isonet(seed, perturb=perturb, **overrides)
    data = subject_for(
        model,
        n_windows,
        seed=seed,
        labels=labels,
        train=train,
        subject=subject,
        repetitions=repetitions,
    )
    return model, data


TWO_CLASS_MODALITIES = {"emg": 12, "acc": 36}


def two_class_subjects(subjects: tuple[int, ...], n: int, samples: int = 8) -> dict:
    """Subject -> `SubjectData` for the training-study tests: ``n`` windows of 12 sEMG and 36
    ACC channels, class ``i % 2`` (gestures 1 and 2) shifted by its class, so a model learns
    them in an epoch or two; one generator (seed 0) draws every subject's windows in turn, and
    each subject trains and tests on the same windows."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    channels = sum(TWO_CLASS_MODALITIES.values())
    found = {}
    for s in subjects:
        X = rng.standard_normal((n, channels, samples)).astype(np.float32) + y[:, None, None]
        found[s] = SubjectData.from_windows(
            TWO_CLASS_MODALITIES, (X, y), (X, y), subject=s, classes=[1, 2]
        )
    return found
