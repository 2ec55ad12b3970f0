"""End to end on each synthetic downstream dataset, through the command line: ``synth`` writes
the real layout, ``windows --dataset`` builds the thesis's store with its split, ``finetune
--windows`` fine-tunes a tiny TinyMyo -- above chance on EPN-612 and UCI, and a test MAE below
predicting the training mean on NinaPro DB8."""

from __future__ import annotations

import pytest

from emg_lens import EncoderConfig
from emg_lens.checkpoints import save_checkpoint
from emg_lens.cli import run
from emg_lens.models import TinyMyo

pytestmark = pytest.mark.slow

# dataset, channels, synth --n-subjects, --movement-seconds, --window, --step, epochs
CASES = [
    ("epn612", 8, 2, 0.5, 100, None, 15),  # one window per sample: no --step
    ("uci", 8, 3, 0.6, 100, 100, 15),  # 600 rows a gesture (the real 3 s are ~3000 rows)
    ("ninapro-db8", 16, 1, 2.0, 200, 100, 15),
]


def _tiny_tinymyo(path, channels: int, window: int) -> str:
    cfg = EncoderConfig.preset(
        "tinymyo",
        n_layers=1,
        modalities={"emg": channels},
        n_samples=window,
        d_model=32,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        seed=0,
    )
    return str(save_checkpoint(TinyMyo(cfg, task="reconstruction"), path))


@pytest.mark.parametrize(
    ("name", "channels", "subjects", "seconds", "window", "step", "epochs"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_a_tiny_tinymyo_learns_each_synthetic_downstream_set(
    tmp_path, name, channels, subjects, seconds, window, step, epochs
):
    root, store = tmp_path / name, tmp_path / f"{name}.h5"
    run(["synth", "--format", name, "--out", str(root), "--n-subjects", str(subjects),
         "--movement-seconds", str(seconds)])  # fmt: skip
    step_option = [] if step is None else ["--step", str(step)]
    run(["windows", "--dataset", name, "--root", str(root), "--out", str(store),
         "--window", str(window), *step_option, "--quiet"])  # fmt: skip
    result = run(
        ["finetune", "--checkpoint", _tiny_tinymyo(tmp_path / "pretrained", channels, window),
         "--windows", str(store), "--out", str(tmp_path / "model"), "--epochs", str(epochs),
         "--warmup-epochs", "1", "--lr", "3e-3", "--batch-size", "16", "--quiet"]
    )  # fmt: skip
    if name == "ninapro-db8":
        assert result["test"].overall < 0.85 * result["baseline"].overall, result
        # beside it, the per-channel feature baseline (a ridge on channel RMS, issue 46 item 5)
        ridge = result["ridge"]
        assert len(ridge.per_output) == len(result["test"].per_output)
        assert 0 < ridge.overall < result["baseline"].overall, result
    else:
        assert result["test"] > 2 * result["chance"], result
