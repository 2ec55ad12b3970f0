"""braindecode's whole roster against the zoo (issue 75): every architecture of braindecode's
own table (``braindecode.models.util.models_mandatory_parameters``), built as its
``test_model_integration`` builds the first construction (``_get_signal_params`` and the first
of ``_get_possible_signal_params``; the large ones narrower, `NARROW`: widths and depths only),
runs one forward under a plain-torch detector of softmax attention
(`tests.unit.models.softmax_attention`, which knows nothing of emg_lens's `attach`). One whose
forward computes softmax attention and is in none of `ZOO`, `NOT_YET` (with the reason) and
`REFUSED` fails; one refused as having none must compute none.

Every zoo entry then opens through `attach_braindecode` with no other argument: unhooked
output bit-identical to braindecode's, a no-op mask in every layer leaving it (float error of
the explicit softmax, 1e-5, the hook contract's bar), and a cut in the first and last
attention calls equal to the original's forward masked by the detector (-inf set before the
same calls' softmax), and acting, where the model lets it (CodeBrain at its default
``swa_window_size=1`` lets each token see itself alone: it warns, and the cut changes
nothing, as the masked original shows)."""

from __future__ import annotations

import warnings

import pytest
import torch

from emg_lens.models.attached.zoo import NOT_YET, REFUSED, ZOO, attach_braindecode, base_names
from tests.unit.models.softmax_attention import attention_calls, masked_forward
from tests.unit.models.table import offline
from tests.unit.models.test_zoo_constructions import NARROW

bd = pytest.importorskip("braindecode.models")
bd_util = pytest.importorskip("braindecode.models.util")

SLOW = {"VEMG2Pose", "MetaNeuromotorHand", "EEGInceptionMI", "InterpolatedSignalJEPA"}
"""Over 2 s at these sizes (VEMG2Pose and MetaNeuromotorHand at braindecode's own: their
featurizers read 32,000 samples; InterpolatedSignalJEPA attends over 62 x 7 tokens)."""


def _roster():
    out = []
    for name, required, signal in bd_util.models_mandatory_parameters:
        sp = bd_util._get_signal_params(signal)
        kwargs = next(iter(bd_util._get_possible_signal_params(sp, required)))
        marks = [pytest.mark.slow] if name in SLOW else []
        out.append(pytest.param(name, sp, kwargs, id=name, marks=marks))
    return out


ROSTER = _roster()


def _build(name: str, sp: dict, kwargs: dict) -> torch.nn.Module:
    names = [ch["ch_name"] for ch in sp["chs_info"]]
    with warnings.catch_warnings(), offline(name, names):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return getattr(bd, name)(**kwargs, **NARROW.get(name, {})).eval()


def _input(sp: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, len(sp["chs_info"]), sp["n_times"], generator=gen)


def test_the_roster_is_braindecodes_whole_table():
    assert len(ROSTER) == len(bd_util.models_mandatory_parameters) >= 60
    names = {case.values[0] for case in ROSTER}
    assert set(ZOO) <= names and set(REFUSED) <= names


@pytest.mark.parametrize(("name", "sp", "kwargs"), ROSTER)
def test_every_architecture_with_softmax_attention_is_in_the_zoo_or_said_why(name, sp, kwargs):
    calls = attention_calls(_build(name, sp, kwargs), _input(sp))
    if name in REFUSED:
        assert calls == [], f"{name} is refused as having no softmax attention, but has {calls}"
    elif calls:
        assert name in ZOO or name in NOT_YET, (
            f"braindecode's {name} computes softmax attention ({len(calls)} calls, e.g. "
            f"{calls[0]}) but is in none of ZOO, NOT_YET and REFUSED"
        )
    else:
        assert name not in ZOO, f"{name} is in the zoo but computes no softmax attention"


def _cut(n_query: int, n_key: int, seed: int) -> torch.Tensor:
    """A random cut that leaves every query its own key (or, across, the first key)."""
    cut = torch.rand(n_query, n_key, generator=torch.Generator().manual_seed(seed)) < 0.4
    if n_query == n_key:
        return cut & ~torch.eye(n_query, dtype=torch.bool)
    cut[:, 0] = False
    return cut


@pytest.mark.parametrize(
    ("name", "sp", "kwargs"), [case for case in ROSTER if case.values[0] in ZOO]
)
def test_every_zoo_architecture_opens_exactly_and_cuts_as_a_masked_original(name, sp, kwargs):
    original, x = _build(name, sp, kwargs), _input(sp)
    names = [ch["ch_name"] for ch in sp["chs_info"]]
    own = {"ch_names": base_names(name, original, names)} if ZOO[name].needs_names else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = attach_braindecode(original)
    vacuous = [w for w in caught if "swa_window_size=1" in str(w.message)]
    assert bool(vacuous) == (name == "CodeBrain" and kwargs.get("swa_window_size", 1) == 1)
    with torch.no_grad():
        expected = original(x, **own)
        assert torch.equal(model(x), expected)
        last = len(model.calls) - 1
        shapes = {i: (model.calls[i].n_query, model.calls[i].n_key) for i in (0, last)}
        none = {i: torch.zeros(shape, dtype=torch.bool) for i, shape in shapes.items()}
        torch.testing.assert_close(model(x, edge_masks=none), expected, atol=1e-5, rtol=1e-5)
        cuts = {i: _cut(*shape, seed=i) for i, shape in shapes.items()}
        masked = model(x, edge_masks=cuts)
    theirs = masked_forward(original, x, cuts, **own)
    torch.testing.assert_close(masked, theirs, atol=1e-5, rtol=1e-5)
    assert torch.equal(theirs, expected) if vacuous else not torch.equal(masked, expected)
