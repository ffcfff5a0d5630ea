"""The latent-prior sampler of flows: draw latents from the prior, decode them exactly.

For Glow (Kingma & Dhariwal, 2018, §3 and §5.2) the model's `prior_latents` draws every
level's latent with its prior's standard deviation scaled by the temperature T, and
`decode` inverts the flow. T = 0 is defined here: the prior's mean, decoded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.errors import NonFiniteDecodeError
from tractable.sampling.progress import Callback, report
from tractable.sampling.protocol import LatentSampleable
from tractable.sampling.registry import register_sampler


def sampling_remedy(temperature: float) -> str:
    """What to do when sampled latents decode to NaN or inf (`NonFiniteDecodeError`)."""
    return (f"when sampling, lower the temperature (it was {temperature:g}) or use a model "
            "trained longer or at a lower learning rate")


@register_sampler("prior", needs=LatentSampleable, zero_temperature=True,
                  help="latents drawn from the prior (std × temperature), decoded (flows)")
@torch.no_grad()
def sample_prior(
    model: LatentSampleable,
    n: int,
    *,
    y: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]` by decoding latents from the prior (one step)."""
    try:
        images = model.decode(model.prior_latents(n, y, temperature, generator), y)
    except NonFiniteDecodeError as e:
        raise e.with_remedy(sampling_remedy(temperature)) from None
    report(callback, 1, 1, "decode")
    return images
