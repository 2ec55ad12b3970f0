"""TransformerLens's random-init control, ``transformer_lens.tools.analysis.reinitialized``, on
every native and converted model of the model table (issue 58): it resets a copy by calling
every module's ``reset_parameters``, which emg_lens's modules take from their config
(`emg_lens.components.init`), the same draws a model built from its config makes. Attached
models and a converted encoder's user modules keep their own modules' ``reset_parameters``
(torch's ``nn.MultiheadAttention``'s, named ``_reset_parameters``, under that name too)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from transformer_lens.tools.analysis import reinitialized

from emg_lens.components import ConfigInit
from tests.unit.models import table

NATIVE, CONVERTED = table.names("native"), table.names("converted")
SEED = 3


def _x(model):
    return model.example_input(3)


def _fresh_from_config(model, seed: int):
    """``model``'s class built from its config with ``cfg.seed = seed`` (a converted torch
    encoder takes its user's modules: copies of the model's)."""
    kwargs = dict(model.init_kwargs)
    if hasattr(model, "user_modules"):
        kwargs |= {"embed": model.embed, "readout": model.head}
    cfg = dataclasses.replace(model.cfg, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return type(model)(cfg, **kwargs)


def _owned(model) -> dict[str, torch.Tensor]:
    """The parameters emg_lens's modules own (`ConfigInit`), by name."""
    return {
        f"{path}.{name}" if path else name: param
        for path, module in model.named_modules()
        if isinstance(module, ConfigInit)
        for name, param in module.named_parameters(recurse=False)
    }


@pytest.mark.parametrize("name", NATIVE)
def test_on_a_native_model_it_is_the_model_its_config_builds_with_that_seed(name):
    trained = table.make(name)  # biases and norm weights moved: not an initialisation
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    untrained = reinitialized(trained, seed=SEED)
    fresh = table.build(name, seed=SEED)[0]
    assert list(dict(untrained.named_parameters())) == list(dict(fresh.named_parameters()))
    for (key, got), want in zip(untrained.named_parameters(), fresh.parameters()):
        assert torch.equal(got, want), key
    assert all(torch.equal(v, before[k]) for k, v in trained.state_dict().items())
    assert not untrained.training
    out = untrained(_x(untrained))
    assert torch.isfinite(out).all() and not torch.allclose(out, trained(_x(trained)))


@pytest.mark.parametrize("name", CONVERTED)
def test_on_a_converted_model_it_draws_every_weight_as_its_config_does(name):
    """Not bit for bit a fresh build (torch's order of modules, not the converter's order of
    draws), but each parameter from the same rule: the constants exactly, the normal draws with
    the config's spread; a converted torch encoder's user modules reset by their own."""
    trained = table.make(name)
    untrained = reinitialized(trained, seed=SEED)
    again = reinitialized(trained, seed=SEED)
    assert all(torch.equal(a, b) for a, b in zip(untrained.parameters(), again.parameters()))
    fresh = _fresh_from_config(trained, SEED)
    got, want, old = _owned(untrained), _owned(fresh), dict(trained.named_parameters())
    assert list(got) == list(want)
    drawn_got, drawn_want = [], []
    for key, value in got.items():
        reference = want[key]
        if reference.unique().numel() == 1:  # a constant of the rule (a bias, a norm weight)
            assert torch.equal(value, reference), key
        else:
            assert not torch.equal(value, old[key]), key
            drawn_got.append(value.flatten())
            drawn_want.append(reference.flatten())
    spread = torch.cat(drawn_got).std() / torch.cat(drawn_want).std()
    assert 0.9 < spread < 1.1, spread  # thousands of draws from N(0, init_range) on each side
    users = {k: v for k, v in untrained.named_parameters() if k not in got}
    assert all(not torch.equal(v, old[k]) for k, v in users.items()), sorted(users)
    out = untrained(_x(untrained))
    assert torch.isfinite(out).all() and not torch.allclose(out, trained(_x(trained)))


def test_a_head_structure_stays_zero_where_heads_do_not_read_or_write():
    """CBraMod's criss-cross halves: spatial heads read and write the first half of d_model."""
    untrained = reinitialized(table.make("braindecode_cbramod"), seed=SEED)
    attn = untrained.blocks[0].attn
    heads, half = attn.cfg.n_heads // 2, attn.cfg.d_model // 2
    for W in (attn.W_Q, attn.W_K, attn.W_V):
        assert W[:heads, half:].eq(0).all() and W[heads:, :half].eq(0).all()
        assert W[:heads, :half].ne(0).all()
    assert attn.W_O[:heads, :, half:].eq(0).all() and attn.W_O[heads:, :, :half].eq(0).all()
    assert untrained.patch_embedding.mask_encoding.eq(0).all()


def test_a_user_module_without_reset_parameters_is_refused_by_name():
    """TransformerLens refuses what no ``reset_parameters`` covers, naming it: here the user's
    tokenizer's own parameters, and nothing of emg_lens's."""
    model = table.make("torch_pre_ln")
    model.embed.reset_parameters = None  # a user's module that does not say how to reset
    with pytest.raises(ValueError, match=r"reinitialized cannot reset embed\.pos, embed\.cls:"):
        reinitialized(model, seed=SEED)


ATTACHED = [n for n in table.names("attached") if n.startswith(("attached_", "example_"))]
ATTACHED.remove("example_spectral")  # its own parameter `channel` (below)


@pytest.mark.parametrize("name", ATTACHED)
def test_on_an_attached_model_it_redraws_every_parameter_as_torch_does(name):
    """An attached model's parameters are the user's modules', reset by their torch layers'
    ``reset_parameters``, and ``nn.MultiheadAttention``'s by its ``_reset_parameters``
    (`emg_lens.models.attached.find.torch_resets`), in a copy; the original untouched."""
    trained = table.build(name)[0]
    with torch.no_grad():  # trained: no parameter left at a value a reset could draw again
        for param in trained.parameters():
            param.add_(0.1 * torch.randn_like(param) + 0.1)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    untrained = reinitialized(trained, seed=SEED)
    again = reinitialized(trained, seed=SEED)
    params = zip(untrained.named_parameters(), trained.parameters(), again.parameters())
    for (key, got), old, twin in params:
        assert not torch.equal(got, old), key
        assert torch.equal(got, twin), key
    assert all(torch.equal(v, before[k]) for k, v in trained.state_dict().items())
    for mha in (m for m in untrained.modules() if isinstance(m, torch.nn.MultiheadAttention)):
        bound = (6 / (mha.in_proj_weight.shape[0] // 3 + mha.embed_dim)) ** 0.5  # xavier
        assert mha.in_proj_bias.eq(0).all() and mha.in_proj_weight.abs().max() <= bound
    x = trained.example_input(3)
    assert not untrained.training
    out, cache = untrained.run_with_cache(x)
    assert torch.isfinite(out).all() and not torch.allclose(out, trained(x))
    assert torch.isfinite(cache["blocks.0.attn.hook_pattern"]).all()


def test_an_attached_models_own_parameter_is_refused_by_name():
    """A parameter of the user's own module, not of a torch layer: no reset says how to draw
    it, and TransformerLens refuses it by name."""
    with pytest.raises(ValueError, match=r"reinitialized cannot reset model\.channel:"):
        reinitialized(table.build("example_spectral")[0], seed=SEED)
