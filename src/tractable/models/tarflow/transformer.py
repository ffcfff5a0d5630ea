"""The causal Transformer inside each TarFlow block (Zhai et al. 2025, §2.3): pre-norm
layers of causal multi-head self-attention and an MLP, each with a residual connection.

Besides the full causal pass over a sequence (`forward`), every layer runs one position at
a time against a key/value cache (`step`): the keys and values of earlier positions never
change once those positions are known, so inverting a block patch by patch costs one token
per step instead of a whole sequence.

`attention_temperature` τ divides the attention logits (τ > 1 flattens every attention
distribution). It is 1 in training and likelihoods; the paper's unconditional guidance
(§2.6) contrasts the model with a τ ≠ 1 copy of itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """Keys and values `[B, heads, N, head_dim]` of the positions seen so far, one layer."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def write(self, i: int, k: Tensor, v: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """Store position i's key and value (`[B, heads, 1, d]`); return those of 0..i."""
        if self.keys is None or self.values is None:
            b, h, _, d = k.shape
            self.keys = k.new_zeros(b, h, length, d)
            self.values = v.new_zeros(b, h, length, d)
        self.keys[:, :, i] = k[:, :, 0]
        self.values[:, :, i] = v[:, :, 0]
        return self.keys[:, :, : i + 1], self.values[:, :, : i + 1]


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _scale(self, head_dim: int, temperature: float) -> float:
        return 1.0 / (temperature * math.sqrt(head_dim))

    def _merge(self, o: Tensor) -> Tensor:
        b, h, n, d = o.shape
        return self.proj(o.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        q, k, v = self._heads(x)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           scale=self._scale(q.shape[-1], temperature))
        return self._merge(o)

    def step(self, x: Tensor, i: int, cache: KVCache, length: int,
             temperature: float = 1.0) -> Tensor:
        """Position i alone (`x` `[B, 1, width]`), attending to the cached positions 0..i."""
        q, k, v = self._heads(x)
        keys, values = cache.write(i, k, v, length)
        o = F.scaled_dot_product_attention(q, keys, values,
                                           scale=self._scale(q.shape[-1], temperature))
        return self._merge(o)


class TransformerLayer(nn.Module):
    """x + attn(LN(x)), then + MLP(LN(·)) (pre-norm, GELU)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))

    def forward(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        x = x + self.attn(self.norm1(x), temperature)
        return x + self.mlp(self.norm2(x))

    def step(self, x: Tensor, i: int, cache: KVCache, length: int,
             temperature: float = 1.0) -> Tensor:
        x = x + self.attn.step(self.norm1(x), i, cache, length, temperature)
        return x + self.mlp(self.norm2(x))


def zero_linear(fan_in: int, fan_out: int) -> nn.Linear:
    """A linear layer that starts as the zero map (each flow block starts as the identity)."""
    layer = nn.Linear(fan_in, fan_out)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    return layer
