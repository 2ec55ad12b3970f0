"""The transformer block (pre-LN, or post-LN for converted models) with the legacy
TransformerLens residual hooks."""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import repeat
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components.attend import observed
from emg_lens.components.attention import Attention
from emg_lens.components.fast_attention import Projected, take_rows
from emg_lens.components.layer_norm import make_norm
from emg_lens.components.mlp import MLP
from emg_lens.config import EncoderConfig


@checked
class TransformerBlock(nn.Module):
    """``resid_mid = resid_pre + attn(ln1(resid_pre))``; ``resid_post = resid_mid + mlp(ln2(.))``.

    Pre-LN makes the residual stream a sum of component outputs, which
    `ActivationCache.decompose_resid` and friends rely on. Dropout (training only) acts before
    the sub-layer output hooks, so in eval mode ``hook_attn_out`` is exactly what is added.

    With ``EncoderConfig.norm_position="post"`` (torch's ``norm_first=False``) the norms follow
    the sums: ``resid_mid = ln1(resid_pre + attn(resid_pre))``, ``resid_post = ln2(resid_mid +
    mlp(resid_mid))``, the residual hooks on the normalised stream, the norms' hooks on the sum
    they normalise. The stream is then no sum of component outputs (docs/DESIGN.md §2,
    "Pre-LN"): ``decompose_resid`` does not add up to it, and direct logit attribution through
    it is not exact (each norm rescales all that came before it).

    Optional hook points, as legacy ``HookedTransformer``'s, fire only while their ``cfg``
    flag is on (`OPTIONAL_HOOKS`; the model's ``set_use_split_qkv_input`` & co. say what each
    holds). The residual adds still use ``resid_pre`` and ``resid_mid``: an edit at these
    points reaches only the sub-layer.

    >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0)
    >>> block(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    # hook point -> the cfg flag that turns it on (TransformerLens's names and flags)
    OPTIONAL_HOOKS: ClassVar[dict[str, str]] = {
        "hook_attn_in": "use_attn_in",
        "hook_q_input": "use_split_qkv_input",
        "hook_k_input": "use_split_qkv_input",
        "hook_v_input": "use_split_qkv_input",
        "hook_mlp_in": "use_hook_mlp_in",
    }

    # TransformerLens's logit lens reads a block's hook_resid_post as the one residual stream
    # that ln_final normalises; it asks every block to say so.
    hook_out_is_single_residual_stream = True

    def __init__(self, cfg: EncoderConfig, block_index: int):
        super().__init__()
        self.cfg = cfg
        self.layer = block_index
        self.post_norm = cfg.norm_position == "post"
        self.ln1 = make_norm(cfg, "ln1")
        self.attn = Attention(cfg)
        self.ln2 = make_norm(cfg, "ln2")
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_in = HookPoint()  # [batch, pos, head_index, d_model]; use_attn_in
        self.hook_q_input = HookPoint()  # [batch, pos, head_index, d_model]; use_split_qkv_input
        self.hook_k_input = HookPoint()  # [batch, pos, head_index, d_model]; use_split_qkv_input
        self.hook_v_input = HookPoint()  # [batch, pos, head_index, d_model]; use_split_qkv_input
        self.hook_mlp_in = HookPoint()  # [batch, pos, d_model]; use_hook_mlp_in
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self.dropout(self.attend(resid_pre, edge_mask)))
        return self.after_attention(resid_pre, attn_out)

    def attend(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """Attention's output for ``resid_pre`` (before dropout and ``hook_attn_out``): through
        ``ln1`` (pre-LN), or through the per-head copies of ``resid_pre`` when
        ``use_split_qkv_input`` or ``use_attn_in`` is on.

        >>> cfg = EncoderConfig.preset("tiny", use_split_qkv_input=True)
        >>> block = TransformerBlock(cfg, 0)
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in block.parameters()]
        >>> x = torch.randn(2, 7, 16)
        >>> torch.allclose(block.attend(x), block.attn(block.ln1(x)), atol=1e-6)
        True
        """
        norm = (lambda t: t) if self.post_norm else self.ln1
        split, shared = self.cfg.use_split_qkv_input, self.cfg.use_attn_in
        if not (split or shared):
            return self.attn(norm(resid_pre), edge_mask)
        fork = repeat(
            resid_pre,
            "batch pos d_model -> batch pos head_index d_model",
            head_index=self.cfg.n_heads,
        )
        if shared:
            fork = self.hook_attn_in(fork.clone())
        if split:
            inputs = tuple(
                hook(fork.clone())
                for hook in (self.hook_q_input, self.hook_k_input, self.hook_v_input)
            )
        else:
            inputs = (fork, fork, fork)
        return self.attn(tuple(norm(t) for t in inputs), edge_mask)

    def mlp_input(
        self, resid_mid: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """What the MLP reads of ``resid_mid``: ``ln2(resid_mid)`` (pre-LN) or ``resid_mid``
        itself (post-LN), through ``hook_mlp_in`` first while ``use_hook_mlp_in`` is on."""
        if self.cfg.use_hook_mlp_in:
            resid_mid = self.hook_mlp_in(resid_mid.clone())
        return resid_mid if self.post_norm else self.ln2(resid_mid)

    def rows_forward(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        rows: list[int],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch row d_model"]:
        """``forward(resid_pre, edge_mask)[:, rows]`` in eval mode, computing attention only
        for the query ``rows`` (`Attention.query_rows`) and the rest at those positions.

        >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in block.parameters()]
        >>> x = torch.randn(2, 7, 16)
        >>> torch.allclose(block.rows_forward(x, [0]), block(x)[:, [0]], atol=1e-5)
        True
        """
        projected = self.project(resid_pre, rows)
        if projected is not None:
            return self.from_projected(resid_pre, projected, edge_mask)
        attn_in = resid_pre if self.post_norm else self.ln1(resid_pre)
        attn_out = self.attn.query_rows(attn_in, rows, edge_mask)
        return self.after_attention(take_rows(resid_pre, rows, 1), attn_out)

    def project(
        self, resid_pre: Float[torch.Tensor, "batch pos d_model"], rows: list[int] | None = None
    ) -> Projected | None:
        """What no edge mask changes in this block's forward: ``ln1`` and attention's q, k, v
        projections (`Attention.project`; with ``rows``, the queries of those positions
        alone), so that every mask applied to one input shares them (the study runner's
        conditions of one prefix). None where the forward does not run that way: in training
        (dropout), with a hook on any of the block's hook points, with split q/k/v inputs, or
        where attention has no fast path.

        >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in block.parameters()]
        >>> x, mask = torch.randn(2, 7, 16), torch.rand(4, 7, 7) > 0.5
        >>> shared = block.project(x)
        >>> torch.equal(block.from_projected(x, shared, mask), block(x, mask))
        True
        """
        if (
            self.training
            or self.cfg.use_split_qkv_input
            or self.cfg.use_attn_in
            or observed(h for h in self.modules() if isinstance(h, HookPoint))
        ):
            return None
        return self.attn.project(resid_pre if self.post_norm else self.ln1(resid_pre), rows)

    def from_projected(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        projected: Projected,
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch row d_model"]:
        """The block's output for ``resid_pre`` from `project`'s projections of it, with
        ``edge_mask``: ``forward(resid_pre, edge_mask)`` bit for bit, or its ``rows`` (within
        float error) for a projection of some query rows.

        >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in block.parameters()]
        >>> x = torch.randn(2, 7, 16)
        >>> out = block.from_projected(x, block.project(x, rows=[0]))
        >>> torch.allclose(out, block(x)[:, [0]], atol=1e-5)
        True
        """
        attn_out = self.attn.from_projected(projected, edge_mask)
        rows = projected.rows
        kept = resid_pre if rows is None else take_rows(resid_pre, rows, 1)
        return self.after_attention(kept, attn_out)

    def after_attention(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        attn_out: Float[torch.Tensor, "batch pos d_model"],
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """The rest of the block once attention has written ``attn_out``: position by position
        (nothing after attention mixes tokens), so it may run on any subset of positions, as
        the screen's exact last-layer effects do.

        >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in block.parameters()]
        >>> x = torch.randn(2, 7, 16)
        >>> out = block.after_attention(x, block.attn(block.ln1(x)))
        >>> torch.allclose(out, block(x))
        True
        """
        if self.post_norm:
            resid_mid = self.hook_resid_mid(self.ln1(resid_pre + attn_out))
            mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.mlp_input(resid_mid))))
            return self.hook_resid_post(self.ln2(resid_mid + mlp_out))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.mlp_input(resid_mid))))
        return self.hook_resid_post(resid_mid + mlp_out)
