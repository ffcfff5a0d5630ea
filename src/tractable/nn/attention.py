"""Causal non-local (self-attention) blocks for the two PixelCNN++ streams.

A non-local block (Wang et al., 2018, eq. 1) lets every position read a weighted sum of
all positions. In an autoregressive network it must only read positions whose content is
already allowed at the query — otherwise the model looks at pixels it is predicting (the
"enhanced" PixelCNN++ fork's bug). What "allowed" means follows from each stream's
semantics (`tractable.nn.shifted`). At a resolution reduced by `s` (s = 1, 2, 4), position
(i, j) stands for image position (s·i, s·j), and:

* the *down* stream at (i, j) depends only on image rows < s·i. A key at (i', j') with
  i' ≤ i depends on rows < s·i' ≤ s·i: allowed. So down-stream queries attend to keys in
  the same or earlier rows (`"rows"` mask), keys taken from the down stream.
* the *down-right* stream at (i, j) depends only on image pixels strictly before
  (s·i, s·j) in raster order. A key at (i', j') ≤ (i, j) in raster order depends on
  pixels before (s·i', s·j') ≤ (s·i, s·j): allowed; so does a down-stream key there (it
  depends on rows < s·i' only). Down-right queries attend to keys at raster positions
  ≤ their own (`"raster"` mask), keys taken from both streams.

Both masks include the query's own position, so no row of the softmax is empty; masked
logits are −inf, so masked keys get exactly zero weight and exactly zero gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tractable.nn.gated_resnet import concat_elu
from tractable.nn.weight_norm import NIN


def causal_attention_mask(
    height: int, width: int, kind: str, device: torch.device | None = None
) -> Tensor:
    """`[HW, HW]` bool, True where query position q (row) may attend to key position k.

    kind "rows": key row ≤ query row; kind "raster": key ≤ query in raster order.
    """
    pos = torch.arange(height * width, device=device)
    if kind == "rows":
        row = pos // width
        return row[None, :] <= row[:, None]
    if kind == "raster":
        return pos[None, :] <= pos[:, None]
    raise ValueError(f"unknown causal mask kind {kind!r}; use 'rows' or 'raster'")


def masked_attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor) -> Tensor:
    """Scaled dot-product attention over flattened positions (Vaswani et al., 2017, eq. 1).

    query, key: `[B, N, d]`; value: `[B, N, dv]`; mask: `[N, N]` bool. Returns `[B, N, dv]`.
    """
    scores = query @ key.transpose(1, 2) / math.sqrt(query.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    if scores.dtype in (torch.float16, torch.bfloat16):  # softmax in float32 under autocast
        scores = scores.float()
    return torch.softmax(scores, dim=-1).to(value.dtype) @ value


def _flatten(x: Tensor) -> Tensor:
    """`[B, C, H, W]` -> `[B, HW, C]`."""
    return x.flatten(2).transpose(1, 2)


def _unflatten(x: Tensor, height: int, width: int) -> Tensor:
    """`[B, HW, C]` -> `[B, C, H, W]`."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)


class CausalNonLocalBlock(nn.Module):
    """Residual causal self-attention on the down stream `u` and down-right stream `ul`.

        u'  = u  + out_u(attend(q_u(u),  k_u(u),       v_u(u),       mask "rows"))
        ul' = ul + out_ul(attend(q_ul(ul), k_ul(u', ul), v_ul(u', ul), mask "raster"))

    with q/k/v/out weight-normed 1×1 maps applied to concat_elu of their inputs, a single
    head, and output maps initialized at scale 0.1 like the gated blocks' last conv.
    """

    def __init__(self, channels: int, key_channels: int | None = None) -> None:
        super().__init__()
        f = channels
        dk = key_channels or max(4, channels // 4)
        self.u_query, self.u_key, self.u_value = NIN(2 * f, dk), NIN(2 * f, dk), NIN(2 * f, f)
        self.u_out = NIN(f, f, init_scale=0.1)
        self.ul_query, self.ul_key, self.ul_value = NIN(2 * f, dk), NIN(4 * f, dk), NIN(4 * f, f)
        self.ul_out = NIN(f, f, init_scale=0.1)

    def forward(self, u: Tensor, ul: Tensor) -> tuple[Tensor, Tensor]:
        h, w = u.shape[-2:]
        rows = causal_attention_mask(h, w, "rows", u.device)
        raster = causal_attention_mask(h, w, "raster", u.device)

        eu = concat_elu(u)
        att = masked_attention(
            _flatten(self.u_query(eu)), _flatten(self.u_key(eu)), _flatten(self.u_value(eu)), rows
        )
        u = u + self.u_out(_unflatten(att, h, w))

        eul, both = concat_elu(ul), concat_elu(torch.cat([u, ul], dim=1))
        att = masked_attention(
            _flatten(self.ul_query(eul)), _flatten(self.ul_key(both)),
            _flatten(self.ul_value(both)), raster,
        )
        ul = ul + self.ul_out(_unflatten(att, h, w))
        return u, ul
