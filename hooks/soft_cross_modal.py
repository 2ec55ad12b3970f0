"""A custom hook function: *soften* cross-modal attention instead of cutting it.

Where masking writes -inf into the cross-modal attention logits, this subtracts a fixed
penalty (in logit units), so cross-modal keys keep some weight. Sweeping the penalty gives a
dose-response curve between the unmasked model (0) and full masking (infinity).

A study file in studies/ references the factory as
hook = "../hooks/soft_cross_modal.py:soft_cross_modal";
the runner calls it with the model and the layers of each condition and runs the hooks it
returns with model.run_with_hooks.
"""

from emg_lens.edges import cross_modal
from emg_lens.hooks import attn_scores_filter

PENALTY = 4.0  # logit units: exp(-4) ~ 2% of a key's weight before renormalisation


def soft_cross_modal(model, layers, penalty=PENALTY):
    """fwd_hooks that subtract ``penalty`` from cross-modal attention logits in ``layers``."""
    mask = cross_modal().compile(model.layout, model.cfg.n_heads)

    def hook(scores, hook):
        return scores - penalty * mask.to(scores.device, scores.dtype)

    return [(attn_scores_filter(layers), hook)]


__all__ = ["PENALTY", "soft_cross_modal"]
