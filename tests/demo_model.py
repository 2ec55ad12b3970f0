"""One trained demo model (`emg-lens demo`'s recipe: demo_setup data, a two-layer IsoNet,
`cross_modal | from_cls` dropped on half the training windows), trained once per pytest run
through `SharedOnDisk` for every test that asks what a trained demo model carries (probes,
interchange, sparse features)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from emg_lens.checkpoints import load_checkpoint
from emg_lens.cli.demo import DEMO_CUT, DEMO_EPOCHS, DEMO_MODEL, DEMO_TRAIN
from emg_lens.config import EncoderConfig
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.synthetic.emg_acc import demo_setup, gesture_kinds
from emg_lens.models import IsoNet
from emg_lens.train import TrainConfig, train_subjects
from tests.shared_on_disk import SharedOnDisk

# Subject 1 of the demo's data of seed 1, trained as `emg-lens demo` trains (DEMO_EPOCHS epochs,
# DEMO_TRAIN with its refits). Seeds 0-2 trained on one thread and 0-1 on two (other
# floating-point paths, as on another CPU) reached 0.92-0.96 on the interaction gestures with the
# mean-pooled head (0.94 for this recipe on one thread, 0.92 on two), each on its first
# attempt: tests bound what all of them satisfy.
RECIPE = {
    "seed": 1,
    "subject": 1,
    "epochs": DEMO_EPOCHS,
    **DEMO_MODEL,
    "cut": DEMO_CUT,
    **DEMO_TRAIN,
}


def demo_data(seed: int = RECIPE["seed"], subject: int = RECIPE["subject"]) -> SubjectData:
    """Subject ``subject`` of `demo_setup`'s data of ``seed`` (through the preprocessing cache)."""
    synthetic, preprocess = demo_setup(max(2, subject), seed)
    return load_subject(
        data_source("synthetic", synthetic=synthetic, preprocess=preprocess), subject
    )


def kind_indices(data: SubjectData, seed: int = RECIPE["seed"]) -> dict[str, list[int]]:
    """Class indices of each gesture kind (``"emg"``, ``"acc"``, ``"interaction"``)."""
    kinds = gesture_kinds(demo_setup(2, seed)[0])
    return {
        k: [i for i, c in enumerate(data.classes) if kinds[c] == k] for k in set(kinds.values())
    }


def _train(folder: Path) -> None:
    data = demo_data()
    synthetic, preprocess = demo_setup(2, RECIPE["seed"])
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    cfg = EncoderConfig.preset("demo", **DEMO_MODEL, seed=RECIPE["seed"])
    train = TrainConfig(epochs=RECIPE["epochs"], seed=RECIPE["seed"], progress=False, **DEMO_TRAIN)
    # reuse: notebook 08 trains this very model (its fit_until_fitted) and `make test` starts
    # from the gallery's kept trainings, but its config has no channel names, which
    # train_subjects gives it from the data, and the config is part of a training's key: so
    # trained on the data without them (the key the notebook's has), and the names, which
    # change no weight, written into the checkpoint's config after, as train_subjects would
    names = data.meta["channel_names"]
    meta = {k: v for k, v in data.meta.items() if k != "channel_names"}
    unnamed = dataclasses.replace(data, meta=meta)
    train_subjects([unnamed], IsoNet, cfg, train, folder, data_source=source, reuse=True)
    config = folder / f"subject_{RECIPE['subject']}" / "config.json"
    info = json.loads(config.read_text())
    info["config"]["channel_names"] = list(names)
    config.write_text(json.dumps(info, indent=2))


def demo_models_folder(shared: SharedOnDisk) -> Path:
    """The folder holding the trained demo model as ``subject_<N>/`` (a ``--models`` folder)."""
    return shared.folder(shared.key("demo_model", RECIPE), _train)


def trained_demo_model(shared: SharedOnDisk) -> tuple[IsoNet, SubjectData]:
    """The trained demo model (eval mode) and its subject's data."""
    folder = demo_models_folder(shared)
    return load_checkpoint(folder / f"subject_{RECIPE['subject']}").eval(), demo_data()
