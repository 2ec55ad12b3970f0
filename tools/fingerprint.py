"""What every model of the test table computes, as SHA-256 digests: run it on two versions of
the code and compare, to show a change left every output as it was, bit for bit.

For each model of ``tests/unit/models/table.py`` (native, converted and attached), on a seeded
input: the forward with and without gradients, every activation ``run_with_cache`` keeps, and,
where the model has attention hooks, the same under a random cut in every layer that leaves
each query a key (plain, and with a hook that turns on the explicit path), under a cut that
leaves a query row of layer 0 no key at all (its outputs, not its gradients: those were NaN
before issue 57), and the parameters' gradients under the first cut.

Write one fingerprint per version (``PYTHONPATH`` picks the code measured), then compare::

    PYTHONPATH=../main python tools/fingerprint.py /tmp/main.json     # a checkout of main
    PYTHONPATH=. python tools/fingerprint.py /tmp/branch.json
    python tools/fingerprint.py --compare /tmp/main.json /tmp/branch.json

``--compare`` prints each digest that differs and ``N of M differ``; it exits 1 where any does.
``--device cuda`` measures on a GPU (compare only fingerprints of one device).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

Digests = dict[str, str]


def digest(value: object) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (of each, in order, for a tuple)."""
    h = hashlib.sha256()
    tensors = value if isinstance(value, (tuple, list)) else [value]
    for t in tensors:
        shape = t.shape
        t = t.detach().cpu().reshape(-1).clone()
        h.update(f"{t.dtype} {list(shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _cuts(model, *, empty_row: bool) -> dict[str, dict[int, torch.Tensor]]:
    """``{keyword: {layer: mask}}``: a random cut ``[heads, query, key]`` in every layer that
    leaves query ``i`` its key ``i``; with ``empty_row``, query 1 of the first layer keeps no
    key. A model without a shared stack (the multimodal transformer) is cut in its stems."""
    from tests.unit.models.table import layout_of

    stems = model.cfg.n_layers == 0
    n_layers = model.cfg.n_stem_layers if stems else model.cfg.n_layers
    gen = torch.Generator().manual_seed(0)
    masks = {}
    for layer in range(n_layers):
        lay = model.layout if stems else layout_of(model, layer)
        heads = model.layer_heads[layer] if hasattr(model, "layer_heads") else model.cfg.n_heads
        q, k = lay.n_queries, lay.n_tokens
        cut = (torch.rand(heads, q, k, generator=gen) < 0.4) & ~torch.eye(q, k, dtype=torch.bool)
        if empty_row and layer == 0:
            cut[:, min(1, q - 1)] = True
        masks[layer] = cut.to(model.cfg.device)
    return {"stem_edge_masks" if stems else "edge_masks": masks}


def _noop(tensor: torch.Tensor, hook: object) -> torch.Tensor:
    return tensor


def fingerprint_model(model, x: torch.Tensor, attention: bool) -> Digests:
    """The digests of one model (see the module docstring)."""
    out: Digests = {"forward": digest(model(x))}
    with torch.no_grad():
        out["forward_no_grad"] = digest(model(x))
    logits, cache = model.run_with_cache(x)
    out["cached_logits"] = digest(logits)
    out.update({f"cache {name}": digest(value) for name, value in cache.items()})
    if not attention:
        return out
    hook = (lambda name: name.endswith("hook_pattern"), _noop)
    for what, empty in (("cut", False), ("empty_row", True)):
        kwargs = _cuts(model, empty_row=empty)
        with torch.no_grad():
            out[f"{what} forward"] = digest(model(x, **kwargs))
            out[f"{what} hooked"] = digest(model.run_with_hooks(x, fwd_hooks=[hook], **kwargs))
        _, cache = model.run_with_cache(x, **kwargs)
        out.update({f"{what} cache {name}": digest(value) for name, value in cache.items()})
    model.zero_grad(set_to_none=True)
    model(x, **_cuts(model, empty_row=False)).square().sum().backward()
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    out.update({f"cut grad {n}": digest(g) for n, g in grads})
    model.zero_grad(set_to_none=True)
    return out


def fingerprint(device: str, only: list[str] | None = None) -> dict[str, Digests]:
    """Every table model's digests, by row name (``only``: those rows)."""
    from emg_lens.models.base import ATTENTION_HOOKS, provides
    from tests.unit.models import table

    result = {}
    for name in only or list(table.TABLE):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = table.make(name).to(device)
            x = model.example_input(3)
            result[name] = fingerprint_model(model, x, provides(model, ATTENTION_HOOKS))
        print(f"{name}: {len(result[name])} digests", file=sys.stderr, flush=True)
    return result


def compare(a: dict[str, Digests], b: dict[str, Digests], say: Callable = print) -> int:
    """The number of digests that differ (or are in one fingerprint only), each said."""
    keys = {(row, what) for side in (a, b) for row, digests in side.items() for what in digests}
    differ = 0
    for row, what in sorted(keys):
        left, right = a.get(row, {}).get(what), b.get(row, {}).get(what)
        if left != right:
            differ += 1
            say(f"differ: {row}: {what}" + ("" if left and right else " (in one only)"))
    say(f"{differ} of {len(keys)} differ")
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="where to write the fingerprint")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", nargs="*", help="only these rows of the table")
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (json.loads(path.read_text()) for path in args.compare)
        return 1 if compare(a, b) else 0
    if args.out is None:
        parser.error("give a file to write, or --compare A B")
    torch.use_deterministic_algorithms(True, warn_only=True)
    args.out.write_text(json.dumps(fingerprint(args.device, args.rows), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
