"""Trained demo models for the tests that need what training on the demo's planted data makes
(sparse features, probes): two subjects of `emg-lens demo`'s data, one two-layer IsoNet each,
trained as the demo trains them but for fewer epochs, built once per pytest run
(`SharedOnDisk`) and read by every test that asks."""

from __future__ import annotations

from pathlib import Path

from tests.shared_on_disk import SharedOnDisk

DEMO_MODELS = {
    "subjects": (1, 2),
    "n_subjects": 2,
    "data_seed": 0,
    "n_layers": 2,
    "train": {"epochs": 20, "lr": 3e-3, "anneal_fraction": 1.0, "seed": 0, "edge_dropout": 0.5},
}
"""The recipe of the trained demo models, `SharedOnDisk`'s key for them."""


def _train(folder: Path) -> None:
    from emg_lens.cli.demo import DEMO_CUT
    from emg_lens.config import EncoderConfig
    from emg_lens.data.datasets import data_source, load_subject
    from emg_lens.data.synthetic.emg_acc import demo_setup
    from emg_lens.models import IsoNet
    from emg_lens.train import TrainConfig, train_subjects

    synthetic, preprocess = demo_setup(DEMO_MODELS["n_subjects"], DEMO_MODELS["data_seed"])
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    data = [load_subject(source, s) for s in DEMO_MODELS["subjects"]]
    train = TrainConfig(**DEMO_MODELS["train"], dropout_edges=DEMO_CUT, progress=False)
    cfg = EncoderConfig.preset("demo", n_layers=DEMO_MODELS["n_layers"], seed=train.seed)
    train_subjects(data, IsoNet, cfg, train, folder, data_source=source)


def demo_checkpoints(shared: SharedOnDisk) -> dict[int, Path]:
    """Each subject's checkpoint folder (``subject_<N>/``, its data source in its metadata)."""
    folder = shared.folder(shared.key("demo_models", DEMO_MODELS), _train)
    return {s: folder / f"subject_{s}" for s in DEMO_MODELS["subjects"]}
