"""Where the screen's rank is lost, and what computing more of each cut exactly would buy
(issue 76). One JSON line.

On the trained paper-size planted model of `screen_vs_exact.py` (`planted_paper`, mean head,
``--windows`` (32) of its test windows), for each *view* (``as_trained``: its training cut as
the base in every pass; ``unmasked``), against the exact knockout of every candidate
(`one_at_a_time`), Spearman's rho of:

- ``screen``: discovery's screen (AtP*: the exact cut pattern, its downstream effect
  linearised; the last layer exact), over all candidates and per layer (``screen_layer``, as
  `screen_vs_exact.py`'s ``layer``);
- ``exact_layers``: the screen with the estimates of layer 0 (``"0"``), or of layers 0 and 1
  (``"0-1"``), replaced by their exact effects: what exact rows there would buy;
- ``resid``: each cut computed exactly through ``k`` blocks (``k`` = 0: its own block; 1; 2;
  by a masked pass whose residual stream is read after block ``layer + k``) and linearised
  from there with the clean model's gradient, of the margin (``margin``), or of every logit,
  the margin then taken exactly from the linearised logits (``logits``);
- ``cost``: the blocks each way evaluates per window, as a share of the one-at-a-time grid's
  (a candidate of layer ``l`` exact from its layer on: ``n_layers - l`` blocks; ``resid``
  ``k``: ``k + 1``; the screen's own forward and backward passes not counted). A screen 50
  times faster than the grid has 0.02 of it to spend.

    python benchmarks/screen_ceiling.py            # the planted paper-size model: minutes
    python benchmarks/screen_ceiling.py --quick    # a random tiny model: seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen_vs_exact import (
    PAPER_PLANTED,
    _random_subject,
    _rho_by,
    mask_hooks,
    one_at_a_time,
    planted_paper,
    with_masks,
)

from emg_lens.discovery import default_family, layer_masks, screen
from emg_lens.discovery.metrics import spearman
from emg_lens.discovery.planted import training_edges
from emg_lens.hooks import compile_edges
from emg_lens.stats.metrics import window_metric

DEPTHS = (0, 1, 2)  # blocks computed exactly after the cut's own


def resid_estimates(model, X, y, family, return_type: str, base=None) -> dict:
    """``{k: {"margin": [...], "logits": [...]}}``: each candidate's mean margin change, exact
    through ``k`` blocks after its own and linearised from there (see the module docstring)."""
    cut = {} if base is None else compile_edges(base, model)
    posts = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    kept: dict[str, torch.Tensor] = {}

    def keep(t, hook):
        kept[hook.name] = t
        if t.requires_grad:
            t.retain_grad()

    def clean_pass(select) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            logits = model.run_with_hooks(
                X,
                return_type=return_type,
                fwd_hooks=[*mask_hooks(model, cut), *((p, keep) for p in posts)],
            )
            select(logits).sum().backward()
        return {name: kept[name].grad.detach() for name in posts}

    X = X.detach().requires_grad_(True)  # a graph back to every block's stream
    margin_grad = clean_pass(lambda logits: window_metric(logits, y, "margin"))
    clean = {name: kept[name].detach() for name in posts}
    n_classes = model.cfg.n_classes
    logit_grads = [clean_pass(lambda logits, c=c: logits[:, c]) for c in range(n_classes)]
    with torch.inference_mode():
        logits = model.run_with_hooks(
            X.detach(), return_type=return_type, fwd_hooks=mask_hooks(model, cut)
        )
        margin = window_metric(logits, y, "margin").double()
    out = {k: {"margin": [], "logits": []} for k in DEPTHS}
    cut_kept: dict[str, torch.Tensor] = {}
    keep_cut = [(p, lambda t, hook: cut_kept.__setitem__(hook.name, t.clone())) for p in posts]
    with torch.inference_mode():
        for candidate in family:
            hooks = mask_hooks(model, with_masks(cut, layer_masks(model, [candidate])))
            model.run_with_hooks(X.detach(), return_type=return_type, fwd_hooks=hooks + keep_cut)
            for k in DEPTHS:
                name = posts[min(candidate.layer + k, len(posts) - 1)]
                change = cut_kept[name] - clean[name]
                out[k]["margin"].append(float((change * margin_grad[name]).sum() / len(y)))
                moved = torch.stack([(change * g[name]).sum((1, 2)) for g in logit_grads], -1)
                after = window_metric(logits + moved, y, "margin").double()
                out[k]["logits"].append(float((after - margin).mean()))
    return out


def view(model, data, family, return_type: str, base=None) -> dict:
    """One view's rhos and the cost of each way (see the module docstring)."""
    X, y = torch.as_tensor(data.X_test), torch.as_tensor(np.asarray(data.y_test))
    exact = np.asarray(one_at_a_time(model, X, y, family, return_type, base))
    table = screen(
        model, data, family=family, batch_size=len(y), return_type=return_type, base=base
    )
    table = table.table.sort_index()
    estimate, layer = table["estimate"].to_numpy(), table["layer"].to_numpy()
    n_layers = model.cfg.n_layers
    grid = len(family) * n_layers  # one full forward per candidate
    out: dict = {
        "screen": spearman(estimate, exact),
        "screen_layer": _rho_by(table, exact, "layer", "method"),
        "exact_zero": int((exact == 0).sum()),
        "exact_layers": {},
        "resid": {},
        "cost": {},
    }
    for name, layers in (("0", [0]), ("0-1", [0, 1])):
        chosen = np.isin(layer, layers)
        out["exact_layers"][name] = spearman(np.where(chosen, exact, estimate), exact)
        out["cost"][f"exact_layers_{name}"] = float((n_layers - layer[chosen]).sum() / grid)
    for k, ways in resid_estimates(model, X, y, family, return_type, base).items():
        out["resid"][str(k)] = {way: spearman(values, exact) for way, values in ways.items()}
        out["cost"][f"resid_{k}"] = float(np.minimum(k + 1, n_layers - layer).sum() / grid)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=32, help="test windows")
    p.add_argument("--cache", type=Path, help="where the planted model is kept (and reused)")
    p.add_argument("--quick", action="store_true", help="a random tiny model, unmasked only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as screen_vs_exact: the same arithmetic on every machine
    if args.quick:
        model, data = _random_subject("tiny", 12, seed=1)
        views = {"unmasked": (None, "logits")}
        name = "random tiny IsoNet"
    else:
        model, data = planted_paper(args.cache)
        chosen = np.random.default_rng(0).choice(len(data.y_test), args.windows, replace=False)
        data = data.select_test(np.sort(chosen))  # the windows screen_vs_exact draws
        base = training_edges(model, PAPER_PLANTED["planted"])
        views = {"as_trained": (base, "avg_logits"), "unmasked": (None, "avg_logits")}
        name = f"IsoNet {model.cfg.d_model}-D, {model.cfg.n_layers} layers, trained, planted"
    family = default_family(model)
    out = {"benchmark": "screen_ceiling", "model": name, "candidates": len(family)}
    out["windows"] = len(data.y_test)
    for view_name, (base, return_type) in views.items():
        out[view_name] = view(model, data, family, return_type, base)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
