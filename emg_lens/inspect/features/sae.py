"""The sparse autoencoder and its training: `TopKSAE` (Gao et al. 2024: each token rebuilt from
its ``k`` largest feature activations, every decoder direction of unit norm) and `fit_sae`
(Adam on the variance-normalised error, an auxiliary loss letting dead features learn it)."""

from __future__ import annotations

import torch
from jaxtyping import Float

from emg_lens.errors import StudyError, checked
from emg_lens.inspect.features.config import FeatureConfig


@checked
class TopKSAE(torch.nn.Module):
    """A TopK sparse autoencoder: ``f = TopK(relu((x - b_dec) @ W_enc + b_enc))``,
    ``x̂ = f @ W_dec + b_dec``, each row of ``W_dec`` (a feature's direction) of unit norm. The
    encoder starts as the decoder's transpose (Gao et al. 2024).

    >>> sae = TopKSAE(d_in=8, n_features=16, k=2, seed=0)
    >>> x = torch.randn(5, 8)
    >>> recon, acts = sae(x)
    >>> norms = sae.W_dec.detach().norm(dim=1)
    >>> recon.shape, int((acts > 0).sum(-1).max()), bool(torch.allclose(norms, torch.ones(16)))
    (torch.Size([5, 8]), 2, True)
    """

    def __init__(self, d_in: int, n_features: int, k: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        directions = torch.randn(n_features, d_in, generator=gen)
        directions /= directions.norm(dim=1, keepdim=True)
        self.k = k
        self.W_enc = torch.nn.Parameter(directions.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(n_features))
        self.W_dec = torch.nn.Parameter(directions)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))

    @property
    def n_features(self) -> int:
        return self.W_dec.shape[0]

    def pre_acts(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... feat"]:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... feat"]:
        """The feature activations: the ``k`` largest pre-activations, rectified; zero else."""
        top = self.pre_acts(x).topk(self.k, dim=-1)
        acts = torch.zeros(*x.shape[:-1], self.n_features, dtype=x.dtype, device=x.device)
        return acts.scatter(-1, top.indices, torch.relu(top.values))

    def decode(self, acts: Float[torch.Tensor, "... feat"]) -> Float[torch.Tensor, "... d_in"]:
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: Float[torch.Tensor, "... d_in"]) -> tuple[torch.Tensor, torch.Tensor]:
        acts = self.encode(x)
        return self.decode(acts), acts

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


def fit_sae(
    sae: TopKSAE, tokens: Float[torch.Tensor, "token d_in"], config: FeatureConfig
) -> list[float]:
    """Adam on the variance-normalised squared error (and the dead features' auxiliary loss);
    the decoder's rows kept at unit norm, their gradient along themselves removed. The loss of
    each epoch; a non-finite loss is a `StudyError`.

    >>> config = FeatureConfig(layer=0, n_features=16, k=2, epochs=3)
    >>> sae = TopKSAE(d_in=8, n_features=16, k=2)
    >>> tokens = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    >>> history = fit_sae(sae, tokens, config)
    >>> len(history), history[-1] < history[0]
    (3, True)
    """
    gen = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():  # a starting point: Gao et al.'s code starts at the geometric median
        sae.b_dec.copy_(tokens.mean(dim=0))
    scale = (tokens - tokens.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-12)
    optimiser = torch.optim.Adam(sae.parameters(), lr=config.lr)
    unfired = torch.zeros(sae.n_features)  # tokens seen since each feature last fired
    history = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(tokens), generator=gen)
        total = 0.0
        for start in range(0, len(tokens), config.batch_size):
            x = tokens[order[start : start + config.batch_size]]
            recon, acts = sae(x)
            error = x - recon
            loss = error.pow(2).sum(dim=-1).mean() / scale
            dead = unfired >= config.dead_tokens
            if config.aux_k and config.aux_coef and dead.any():
                loss = loss + config.aux_coef * _aux_loss(sae, x, error.detach(), dead, config)
            if not torch.isfinite(loss):
                raise StudyError(
                    f"the sparse autoencoder's loss became {loss.item()} in epoch "
                    f"{epoch}: lower FeatureConfig.lr ({config.lr})"
                )
            optimiser.zero_grad()
            loss.backward()
            with torch.no_grad():
                W, grad = sae.W_dec, sae.W_dec.grad
                assert grad is not None  # the loss reads every decoder row: backward set it
                grad -= (grad * W).sum(dim=1, keepdim=True) * W
            optimiser.step()
            sae.normalize_decoder()
            fired = (acts > 0).any(dim=0)
            unfired = torch.where(fired, torch.zeros_like(unfired), unfired + len(x))
            total += loss.item() * len(x)
        history.append(total / len(tokens))
    return history


def _aux_loss(
    sae: TopKSAE, x: torch.Tensor, error: torch.Tensor, dead: torch.Tensor, config: FeatureConfig
) -> torch.Tensor:
    """AuxK: the top ``aux_k`` dead features' reconstruction of the error, normalised by the
    error's own size (Gao et al. 2024, appendix A.2)."""
    pre = sae.pre_acts(x)[:, dead]
    top = pre.topk(min(config.aux_k, int(dead.sum())), dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    recon = acts @ sae.W_dec[dead]
    spread = (error - error.mean(dim=0)).pow(2).sum(dim=-1).mean()
    return (error - recon).pow(2).sum(dim=-1).mean() / spread.clamp_min(1e-12)
