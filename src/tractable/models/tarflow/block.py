"""One TarFlow flow block (Zhai et al. 2025, §2.2–2.3, Eq. 4–5): a causal Transformer
over the patch sequence in the block's own order, giving every patch an affine map whose
shift μ_i and log-scale α_i depend only on the patches before it:

    z_i = (x_i - μ_i(x_<i)) · exp(-α_i(x_<i)),     μ_0 = α_0 = 0,
    log|det dz/dx| = -Σ_i Σ_d α_i,d.

The Transformer reads patch i at position i (input projection + learned position
embedding + class embedding) and its output at position i gives (μ, α) of patch i + 1:
the outputs are shifted by one, so patch 0 passes unchanged. α = c·tanh(a/c) is bounded
(see `TarFlowConfig.log_scale_bound`). The output projection starts at zero, so every
block starts as the identity.

Class conditioning: class weights `[B, K]` (one-hot or soft) mix K learned embeddings; an
extra learned "no class" embedding stands in for dropped labels in training and for the
unconditional half of classifier-free guidance (§2.6).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from tractable.models.tarflow.transformer import KVCache, TransformerLayer, zero_linear


def bounded(a: Tensor, bound: float) -> Tensor:
    """c·tanh(a/c): ≈ a for |a| ≪ c, never beyond ±c."""
    return bound * torch.tanh(a / bound)


class FlowBlock(nn.Module):
    def __init__(self, length: int, dim: int, width: int, layers: int, heads: int,
                 mlp_ratio: int, num_classes: int, bound: float) -> None:
        super().__init__()
        self.length, self.dim, self.bound = length, dim, bound
        self.inp = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.randn(length, width) * 0.02)
        # rows 0..K-1: the classes; row K: "no class"
        self.classes = nn.Parameter(torch.randn(num_classes + 1, width) * 0.02) \
            if num_classes else None
        self.layers = nn.ModuleList(TransformerLayer(width, heads, mlp_ratio)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = zero_linear(width, 2 * dim)

    def transformer_layers(self) -> list[TransformerLayer]:
        return cast(list[TransformerLayer], list(self.layers))

    def condition(self, y_w: Tensor | None, batch: int, drop: Tensor | None = None
                  ) -> Tensor | None:
        """The class embedding `[B, width]` to add at every position: Σ_k y_k·e_k, or
        e_none where `drop` is True or y_w is None; None for an unconditional block."""
        if self.classes is None:
            return None
        none = self.classes[-1].expand(batch, -1)
        if y_w is None:
            return none
        mixed = y_w.to(self.classes.dtype) @ self.classes[:-1]
        return mixed if drop is None else torch.where(drop[:, None], none, mixed)

    def _embed(self, x: Tensor, positions: slice, cond: Tensor | None) -> Tensor:
        h = self.inp(x) + self.pos[positions]
        return h if cond is None else h + cond[:, None]

    def _params(self, h: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        mu, a = self.out(self.norm(h)).to(dtype).chunk(2, dim=-1)
        return mu, bounded(a, self.bound)

    def params(self, x: Tensor, cond: Tensor | None, temperature: float = 1.0
               ) -> tuple[Tensor, Tensor]:
        """(μ, α), each `[B, N, D]`, of every patch of `x` `[B, N, D]` (one full pass);
        row i depends on x_<i only (patch 0 gets zeros)."""
        h = self._embed(x[:, :-1], slice(0, x.shape[1] - 1), cond)
        for layer in self.layers:
            h = layer(h, temperature)
        mu, alpha = self._params(h, x.dtype)
        pad = x.new_zeros(x.shape[0], 1, x.shape[2])
        return torch.cat([pad, mu], 1), torch.cat([pad, alpha], 1)

    def forward(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """x -> z and log|det dz/dx| `[B]`."""
        mu, alpha = self.params(x, cond)
        return (x - mu) * torch.exp(-alpha), -alpha.flatten(1).sum(1)

    def stepper(self, batch: int, cond: Tensor | None, temperature: float = 1.0
                ) -> BlockStepper:
        return BlockStepper(self, batch, cond, temperature)


class BlockStepper:
    """The block run one position at a time with key/value caches (for its inverse).

    `params_at(i)` gives (μ_i, α_i) `[B, D]` once patches 0..i-1 were passed to `observe`;
    `observe(i, x_i)` runs patch i through every layer as a single token.
    """

    def __init__(self, block: FlowBlock, batch: int, cond: Tensor | None,
                 temperature: float) -> None:
        self.block, self.batch, self.cond, self.temperature = block, batch, cond, temperature
        self.caches = [KVCache() for _ in block.layers]
        self.next: tuple[Tensor, Tensor] | None = None
        self.seen = 0

    def params_at(self, i: int) -> tuple[Tensor, Tensor]:
        if i == 0:
            w = self.block.pos
            zeros = torch.zeros(self.batch, self.block.dim, dtype=w.dtype, device=w.device)
            return zeros, zeros
        if self.next is None or self.seen != i:
            raise RuntimeError(f"params_at({i}) needs patches 0..{i - 1} observed first")
        return self.next

    def observe(self, i: int, patch: Tensor) -> None:
        if i != self.seen:
            raise RuntimeError(f"observe({i}) after {self.seen} patches: go in order")
        self.seen = i + 1
        if i == self.block.length - 1:
            return  # the last patch parameterizes nothing
        h = self.block._embed(patch[:, None], slice(i, i + 1), self.cond)
        for layer, cache in zip(self.block.transformer_layers(), self.caches, strict=True):
            h = layer.step(h, i, cache, self.block.length, self.temperature)
        mu, alpha = self.block._params(h, patch.dtype)
        self.next = (mu[:, 0], alpha[:, 0])
