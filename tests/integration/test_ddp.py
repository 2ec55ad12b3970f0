"""Data-parallel pretraining: ``torchrun`` starts two CPU processes (gloo), each trains a
replica on its shard of the windows, and after a few optimiser steps both replicas hold the
same weights — different from where they started, and equal to the checkpoint rank 0 wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info

REPO = Path(__file__).resolve().parents[2]

# Each rank starts from *different* weights (seed = rank): equal replicas at the end show that
# DDP broadcast rank 0's weights and kept them in step by averaging the gradients.
WORKER = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from emg_lens import EncoderConfig
    from emg_lens.models import TinyMyo
    from emg_lens.train import PretrainConfig, pretrain

    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    cfg = EncoderConfig.preset(
        "tinymyo", modalities={"emg": 2}, n_samples=40, d_model=16, d_head=4, n_heads=4,
        d_mlp=32, n_layers=2, seed=rank,
    )
    model = TinyMyo(cfg, task="reconstruction", drop_path=0.1)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(out / "initial.safetensors"))
    X = np.random.default_rng(0).standard_normal((24, 2, 40)).astype(np.float32)
    history = pretrain(
        model, X,
        PretrainConfig(epochs=2, batch_size=4, accumulate_steps=2, warmup_epochs=1, lr=1e-3,
                       progress=False),
        out=out / "checkpoint",
    )
    assert history.world_size == 2, history
    assert history.steps == 4, history  # 12 windows per rank, 3 micro-batches, 2 steps/epoch
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / f"rank{rank}.safetensors"))
    """
)


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    initial = load_file(str(tmp_path / "initial.safetensors"))
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    for name, weight in rank0.items():
        assert torch.equal(weight, rank1[name]), name
    changed = [name for name in rank0 if not torch.equal(rank0[name], initial[name])]
    assert "mask_token" in changed and "blocks.1.attn.W_Q" in changed and "head.W_U" in changed
    saved = load_checkpoint(tmp_path / "checkpoint")
    for name, weight in saved.state_dict().items():
        assert torch.equal(weight, rank0[name]), name
    assert read_checkpoint_info(tmp_path / "checkpoint")["metadata"]["history"]["world_size"] == 2
