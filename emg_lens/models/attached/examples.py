"""Small hand-written attention models, as research repositories write them: the models of the
examples, notebooks, tests and benchmarks of `emg_lens.models.attach`.

They share one research-style block, `Block`. Nothing here knows about emg_lens: `attach`
finds the softmax itself.

>>> TinyAttention()(torch.randn(2, 4, 8)).shape, PatchAttention()(torch.randn(2, 4, 8)).shape
(torch.Size([2, 3]), torch.Size([2, 3]))
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import nn

from emg_lens._hints import checked


@checked
class Block(nn.Module):
    """A pre-norm transformer block as research code writes it: multi-head self-attention
    computed by hand (``qkv = nn.Linear(d, 3d)``, scores ``(q @ k^T) * d_head ** -0.5``, an
    optional additive ``bias`` where ``-inf`` blocks a key, ``.softmax(-1)``), then an MLP of
    width ``mlp_ratio * d``, each on a LayerNorm of the residual stream and added back to it.

    ``bias`` broadcasts to the scores ``[batch, head, query, key]`` (e.g. ``[query, key]``): the
    model's own mask, which an edge cut of the attached model equals (notebook 07 checks it).

    >>> block = Block(16, heads=2)
    >>> x = torch.randn(3, 5, 16)  # [batch, token, d]
    >>> block(x).shape
    torch.Size([3, 5, 16])
    >>> bias = torch.zeros(5, 5)
    >>> bias[:, 0] = float("-inf")  # no token reads token 0
    >>> bool(torch.isfinite(block(x, bias)).all())
    True
    """

    def __init__(self, d: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.heads, self.norm1 = heads, nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d)
        )

    def forward(
        self,
        x: Float[torch.Tensor, "batch token d"],
        bias: Float[torch.Tensor, "..."] | None = None,
    ) -> Float[torch.Tensor, "batch token d"]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        attn = (scores if bias is None else scores + bias).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


@checked
class TinyAttention(nn.Module):
    """A one-block attention classifier (the docstrings' model): one token per channel from its
    ``n_samples``, a `Block`, a linear head on the mean token. Its weights are seeded; the
    caller's random state is left as it was.

    >>> net = TinyAttention()
    >>> torch.equal(net.head.weight, TinyAttention().head.weight)
    True
    """

    def __init__(self, n_samples: int = 8, d: int = 16, heads: int = 2, n_classes: int = 3):
        super().__init__()
        with torch.random.fork_rng():  # seeded weights, the caller's random state untouched
            torch.manual_seed(0)
            self.embed = nn.Linear(n_samples, d)
            self.block = Block(d, heads)
            self.head = nn.Linear(d, n_classes)

    def forward(
        self, x: Float[torch.Tensor, "batch channel sample"]
    ) -> Float[torch.Tensor, "batch n_classes"]:
        return self.head(self.block(self.embed(x)).mean(1))


@checked
class SpectralEEG(nn.Module):
    """One token per channel: a linear map of its log power spectrum (the first ``bins`` rFFT
    bins: 0-45 Hz of a 1 s window at 200 Hz), plus a learned channel embedding; two `Block`\\ s
    of 4 heads; a LayerNorm and a linear head on the mean token. No token sees another channel
    before attention does, so an edge cut between channels removes every route between them.

    >>> net = SpectralEEG(channels=19, n_classes=8)
    >>> net(torch.randn(2, 19, 200)).shape
    torch.Size([2, 8])
    """

    def __init__(self, channels: int, n_classes: int, d: int = 32, bins: int = 46):
        super().__init__()
        self.bins = bins
        self.embed = nn.Linear(bins, d)
        self.channel = nn.Parameter(0.02 * torch.randn(channels, d))
        self.blocks = nn.Sequential(Block(d, 4), Block(d, 4))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, n_classes)

    def forward(
        self, x: Float[torch.Tensor, "batch channel sample"]
    ) -> Float[torch.Tensor, "batch n_classes"]:
        power = torch.fft.rfft(x, dim=-1).abs().pow(2)[..., : self.bins]
        tokens = self.embed(torch.log(power + 1e-3)) + self.channel
        return self.head(self.norm(self.blocks(tokens)).mean(1))


@checked
class PatchAttention(TinyAttention):
    """A hand-written attention over the channels of each patch, the patches folded into the
    batch as CBraMod's spatial attention and EEGPT fold them: each channel's window is cut
    into patches of ``patch`` samples, embedded (``[batch, channel, patch, d]``), and one
    `Block` attends ``[batch * patches, head, channel, channel]``, batch-major (input row ``b``
    owns rows ``b * patches`` to ``b * patches + patches - 1``). ``bias`` is the model's own
    additive mask on those scores (``-inf`` = blocked)."""

    def __init__(
        self, n_samples: int = 8, patch: int = 4, d: int = 16, heads: int = 2, n_classes: int = 3
    ):
        super().__init__(patch, d, heads, n_classes)  # one token per patch: its samples
        self.patch = patch

    def fold(self, h: torch.Tensor) -> torch.Tensor:
        """``[batch, channel, patch, d]`` -> ``[batch * patch, channel, d]``, batch-major."""
        return h.transpose(1, 2).flatten(0, 1)

    def unfold(self, h: torch.Tensor, batch: int) -> torch.Tensor:
        """The inverse of `fold`."""
        return h.unflatten(0, (batch, -1)).transpose(1, 2)

    def forward(
        self,
        x: Float[torch.Tensor, "batch channel sample"],
        bias: Float[torch.Tensor, "..."] | None = None,
    ) -> Float[torch.Tensor, "batch n_classes"]:
        b, c, t = x.shape
        h = self.embed(x.view(b, c, t // self.patch, self.patch))
        return self.head(self.unfold(self.block(self.fold(h), bias), b).mean((1, 2)))
