"""Glow's latent arithmetic, which serves every `Invertible` model: `tractable.models.latents`."""

from tractable.models.latents import (
    Latents,
    attribute_vector,
    encode_batched,
    interpolate,
    manipulate,
    mean_latent,
    shift,
)

__all__ = ["Latents", "attribute_vector", "encode_batched", "interpolate", "manipulate",
           "mean_latent", "shift"]
