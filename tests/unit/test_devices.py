"""Devices: ``--device`` resolves as documented, and studies never put a tensor on the wrong
device.

A CPU-only machine has one device, so a tensor created without ``device=`` (a stray
``torch.zeros(n)``) lands where the model is and no test can see it; on a GPU the same line
fails with "Expected all tensors to be on the same device". `ShadowAccelerator` gives the CPU a
second device to catch it: a `TorchFunctionMode` in which tensors moved or created on the
device ``xpu`` are ordinary CPU tensors *tagged* as living there (and report ``.device ==
xpu``), every other tensor is on the CPU, and every torch call checks its arguments as a GPU
would: a tagged tensor meeting an untagged one (but a 0-dim CPU scalar, or CPU indices) is
an error naming the call and the emg_lens line that made it, and ``.numpy()`` of a tagged tensor
is refused. A study run on the shadow device computes real numbers, so its table must equal the
CPU run's. The test that the shadow catches a stray ``torch.zeros`` keeps the check honest.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from emg_lens.cli import build_parser
from emg_lens.cli.common import resolve_device
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError
from emg_lens.models import IsoNet
from emg_lens.studies import run_study, run_training_study
from tests.tiny import tiny_subject, two_class_subjects

PACKAGE = str(Path(__file__).resolve().parents[2] / "emg_lens")
FACTORIES = _device_constructors()
INDEXING = {"__getitem__", "__setitem__", "index_put_", "copy_"}  # CPU indices/sources allowed
NO_DATA = {"_has_compatible_shallow_copy_type"}  # compares tensors' types, not their values


class ShadowAccelerator(TorchFunctionMode):
    """A simulated accelerator ``xpu`` on the CPU (see the module docstring)."""

    device = torch.device("xpu")

    def __init__(self) -> None:
        super().__init__()
        self.tagged = WeakIdKeyDictionary()  # tensor -> True: it lives on the shadow device
        self.placed = 0  # tensors put on the shadow device, so a test can see it was used

    def on(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t in self.tagged

    def tag(self, out, shadow: bool):
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                if shadow:
                    self.tagged[t] = True
                    self.placed += 1
                else:
                    self.tagged.pop(t, None)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        attribute = getattr(getattr(func, "__self__", None), "__name__", None)
        if name in ("__get__", "__set__") and attribute is not None:
            return self._attribute(func, name, attribute, args)
        if name in ("to", "cpu", "cuda"):
            return self._move(func, name, args, kwargs)
        if name == "numpy" and self.on(args[0]):
            raise TypeError(f"can't convert {self.device} tensor to numpy ({_site()})")
        target = kwargs.get("device")
        if target is not None and torch.device(target) == self.device:
            kwargs["device"] = "cpu"
            return self.tag(func(*args, **kwargs), shadow=True)
        if target is not None:
            return self.tag(func(*args, **kwargs), shadow=False)
        if func in FACTORIES:  # no device: the CPU, or where a given tensor is (as_tensor)
            shadow = any(self.on(t) for t in tree_flatten(args)[0])
            return self.tag(func(*args, **kwargs), shadow=shadow)
        if name in NO_DATA:
            return func(*args, **kwargs)
        checked = args[:1] if name in INDEXING else (args, kwargs)
        tensors = [t for t in tree_flatten(checked)[0] if isinstance(t, torch.Tensor)]
        shadow = any(self.on(t) for t in tensors)
        stray = [t for t in tensors if not self.on(t) and t.dim() > 0]
        if shadow and stray:
            raise RuntimeError(
                f"Expected all tensors to be on the same device, but found at least two devices, "
                f"{self.device} and cpu: {name} of a {list(stray[0].shape)} CPU tensor "
                f"({_site()})"
            )
        return self.tag(func(*args, **kwargs), shadow=shadow or self.on(args[0] if args else 0))

    def _attribute(self, func, name: str, attribute: str, args):
        if name == "__get__" and attribute == "device" and self.on(args[0]):
            return self.device
        if name == "__get__" and attribute == "is_cpu" and self.on(args[0]):
            return False
        out = func(*args)
        if name == "__set__" and attribute == "data":  # param.data = moved: the param moved
            self.tag(args[0], shadow=self.on(args[1]))
        elif name == "__get__" and attribute in ("grad", "data") and out is not None:
            self.tag(out, shadow=self.on(args[0]))
        return out

    def _move(self, func, name: str, args, kwargs):
        source = args[0]
        if name == "cuda":
            return func(*args, **kwargs)
        if name == "cpu":
            target = torch.device("cpu")
        elif len(args) > 1 and isinstance(args[1], torch.Tensor):  # x.to(other)
            target = self.device if self.on(args[1]) else args[1].device
        else:
            target = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
        if target is None:  # a dtype change: the tensor stays where it is
            return self.tag(func(*args, **kwargs), shadow=self.on(source))
        shadow = torch.device(target) == self.device
        if shadow:  # the real tensor stays on the CPU
            args = tuple(torch.device("cpu") if _is_device(a, self.device) else a for a in args)
            kwargs = {k: "cpu" if _is_device(v, self.device) else v for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        if out is source and self.on(source) != shadow:
            out = source.view_as(source)  # a move makes a new tensor; the source stays put
        return self.tag(out, shadow=shadow)


def _is_device(value, device: torch.device) -> bool:
    return isinstance(value, str | torch.device) and torch.device(value) == device


def _site() -> str:
    """The emg_lens line that made the call (the first frame in the package)."""
    frame = sys._getframe(2)
    while frame is not None and not frame.f_code.co_filename.startswith(PACKAGE):
        frame = frame.f_back
    if frame is None:
        return "called from outside emg_lens"
    return f"at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


# ----------------------------------------------------------------------------- fixtures


def _model_and_data(seed: int = 0) -> tuple[IsoNet, SubjectData]:
    return tiny_subject(seed, 24, perturb=True, subject=seed)


STUDY = {
    "name": "devices",
    "models": "unused",
    "layers": {"modes": ["individual", "from_first"]},
    "interventions": [
        {"name": "cross", "edges": "cross_modal"},
        {"name": "uni", "edges": "unimodal"},
        {"name": "acc_off", "zero_modality": "acc"},
    ],
}


# ----------------------------------------------------------------------------- --device


def test_device_names_resolve_and_bad_ones_say_what_is_accepted():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(
        ArgumentError,
        match="'gpu' is not a device emg_lens loads models onto; accepted: 'cpu', 'cuda'",
    ):
        resolve_device("gpu")
    with pytest.raises(ArgumentError, match="'meta' is not a device"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(
            ArgumentError, match="--device = 'cuda', but this machine has no CUDA GPU"
        ):
            resolve_device("cuda")


def test_a_gpu_index_past_the_machines_gpus_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        ArgumentError, match="--device = 'cuda:2': this machine has 2 GPUs; accepted: 'cpu', "
    ):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    "argv",
    [
        ["study", "run", "s.toml"],
        ["train", "--out", "x"],
        ["evaluate", "--models", "x"],
        ["inspect", "--checkpoint", "c", "--out", "x"],
        ["probe", "--models", "m", "--out", "x"],
        ["features", "--checkpoint", "c", "--layer", "0", "--out", "x"],
    ],
)
def test_every_model_command_takes_device(argv):
    assert build_parser().parse_args([*argv, "--device", "cpu"]).device == "cpu"
    assert build_parser().parse_args(argv).device == "auto"


# ----------------------------------------------------------------------------- the shadow


def test_the_shadow_device_catches_a_tensor_created_without_a_device():
    model, _ = _model_and_data()
    with ShadowAccelerator() as shadow:
        model.to(shadow.device)
        assert model.cfg.device == "xpu"
        x = model.example_input(2)
        assert x.device == shadow.device
        logits = model(x)
        with pytest.raises(RuntimeError, match="found at least two devices, xpu and cpu"):
            logits + torch.zeros(model.cfg.n_classes)  # the stray tensor a GPU would refuse
        with pytest.raises(TypeError, match="can't convert xpu tensor to numpy"):
            logits.argmax(-1).numpy()
        named = logits + torch.zeros(model.cfg.n_classes, device=logits.device)
        assert named.argmax(-1).cpu().numpy().shape == (2,)
        assert logits.cpu().device.type == "cpu" and logits.device == shadow.device


def test_a_study_on_another_device_never_mixes_devices_and_matches_the_cpu():
    model, data = _model_and_data()
    cpu = run_study(STUDY, models={1: (copy.deepcopy(model), data)}, progress=False)
    with ShadowAccelerator() as shadow:
        moved = run_study(STUDY, models={1: (model, data)}, progress=False, device="xpu")
    assert shadow.placed > 100  # the forward passes really ran on the shadow device
    assert model.cfg.device == "xpu"  # moved as nn.Module.to moves
    pd_equal = moved.per_subject.equals(cpu.per_subject)
    assert pd_equal, (moved.per_subject, cpu.per_subject)


def test_a_training_study_on_another_device_never_mixes_devices_and_matches_the_cpu():
    data = two_class_subjects((1,), 24)
    spec = {
        "name": "t",
        "data": {"subjects": [1], "window": 8},
        "architectures": ["IsoNet"],
        "reference": "both",
        "train": {"preset": "tiny", "epochs": 2, "lr": 0.01, "edge_dropout": 0.5},
        "inputs": [{"name": "both", "modalities": ["emg", "acc"]}],
    }
    cpu = run_training_study(spec, data=data, progress=False)
    with ShadowAccelerator() as shadow:
        moved = run_training_study(spec, data=data, progress=False, device="xpu")
    assert shadow.placed > 100
    columns = ["subject", "architecture", "input", "electrodes", "value"]
    assert moved.per_subject[columns].equals(cpu.per_subject[columns])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_study_matches_the_cpu_cell_for_cell():
    model, data = _model_and_data()
    cpu = run_study(STUDY, models={1: (copy.deepcopy(model), data)}, progress=False)
    gpu = run_study(STUDY, models={1: (model, data)}, progress=False, device="cuda")
    assert next(model.parameters()).is_cuda
    columns = ["subject", "intervention", "mode", "layer", "value", "class_correct"]
    assert gpu.per_subject[columns].equals(cpu.per_subject[columns])
