"""Arithmetic on the latents of any `Invertible` model: interpolation and attribute vectors
(Kingma & Dhariwal 2018, Glow §5.2–5.3).

Latents are what `model.encode` returns: a list with one tensor `[B, ...]` per level. Every
function here acts on all levels at once and returns latents in the same form, ready for
`model.decode`.

- Interpolation (Figure 5): z(t) = (1 - t)·z_a + t·z_b, t = 0..1.
- Attribute vectors (§5.3, Figure 6): v = mean latent of images with the attribute minus
  mean latent of images without it; manipulation is x' = decode(encode(x) + α·v).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tractable.errors import ShapeError
from tractable.models.capabilities import Invertible

Latents = list[Tensor]


def encode_batched(model: Invertible, images: Tensor, batch_size: int = 256,
                   check: bool = True) -> Latents:
    """`model.encode` over many uint8 images in batches (no gradients), concatenated.

    `check=False` skips encode's exact-round-trip check (e.g. for averages of latents)."""
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunks.append(model.encode(images[start:start + batch_size], check=check))
    return [torch.cat(level, dim=0) for level in zip(*chunks, strict=True)]


def _check_pair(za: Sequence[Tensor], zb: Sequence[Tensor]) -> None:
    if len(za) != len(zb) or any(a.shape != b.shape for a, b in zip(za, zb, strict=True)):
        raise ShapeError(
            f"latents disagree in shape: {[list(a.shape) for a in za]} vs "
            f"{[list(b.shape) for b in zb]}"
        )


def interpolate(za: Sequence[Tensor], zb: Sequence[Tensor], steps: int) -> Latents:
    """Linear paths from each z_a to the matching z_b: `[B·steps, ...]` per level, rows of
    pair b at b·steps … b·steps + steps - 1 (t = 0 gives z_a, t = 1 gives z_b)."""
    _check_pair(za, zb)
    if steps < 2:
        raise ShapeError(f"interpolation needs steps >= 2, got {steps}")
    out = []
    for a, b in zip(za, zb, strict=True):
        t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)
        t = t.view(1, steps, *([1] * (a.dim() - 1)))
        path = (1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)  # [B, steps, ...]
        out.append(path.flatten(0, 1))
    return out


def mean_latent(latents: Sequence[Tensor]) -> Latents:
    """The average latent over the batch, `[1, ...]` per level."""
    return [z.mean(dim=0, keepdim=True) for z in latents]


def attribute_vector(latents: Sequence[Tensor], has_attribute: Tensor) -> Latents:
    """v = mean(z | attribute) - mean(z | no attribute) per level, `[1, ...]` each.

    `has_attribute` is a bool `[N]` over the N encoded images; both groups must be non-empty.
    """
    has = has_attribute.to(torch.bool).to(latents[0].device)
    if has.shape != (latents[0].shape[0],):
        raise ShapeError(f"has_attribute must be bool [{latents[0].shape[0]}], "
                         f"got {list(has_attribute.shape)}")
    n_with = int(has.sum())
    if n_with == 0 or n_with == len(has):
        raise ShapeError(f"attribute vector needs images with and without the attribute; got "
                         f"{n_with} with and {len(has) - n_with} without")
    with_, without = mean_latent([z[has] for z in latents]), mean_latent([z[~has] for z in latents])
    return [a - b for a, b in zip(with_, without, strict=True)]


def shift(latents: Sequence[Tensor], vector: Sequence[Tensor], alpha: float) -> Latents:
    """z + α·v on every level (v broadcasts over the batch)."""
    _check_pair([z[:1] for z in latents], vector)
    return [z + alpha * v for z, v in zip(latents, vector, strict=True)]


def manipulate(latents: Sequence[Tensor], vector: Sequence[Tensor],
               alphas: Sequence[float]) -> Latents:
    """z + α·v for each image and each α: `[B·len(alphas), ...]`, image-major rows."""
    shifted = [shift(latents, vector, a) for a in alphas]  # len(alphas) × levels × [B, ...]
    return [torch.stack(level, dim=1).flatten(0, 1) for level in zip(*shifted, strict=True)]
