"""The naive autoregressive sampler: one full forward pass per pixel (and per channel).

This is the reference every faster sampler must reproduce. For each position in raster
order it runs the whole network on the partly generated batch, then asks the likelihood to
sample **only that pixel**: `likelihood.sample(params[:, :, r:r+1, c:c+1], T, generator)`.
So the generator is consumed pixel by pixel in raster order, one likelihood draw per
pixel (per channel step for channel-sequential models), exactly as a cached sampler that
computes the same per-pixel params and makes the same call consumes it; both then give
identical samples from the same generator state.

Given a `Prefix` (image completion, `tractable.sampling.prefix`), the loop starts at the
first unknown raster position, with the known values already in place.

Channel-sequential models (`model.channel_sequential`, e.g. Gated PixelCNN on RGB) predict
channel k of a pixel from channels < k of the same pixel: the sampler runs one forward per
channel, draws the whole pixel from the likelihood and keeps channel k.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.sampling.prefix import Prefix, start_values
from tractable.sampling.progress import Callback, report
from tractable.sampling.protocol import AutoregressiveSampleable
from tractable.sampling.registry import register_sampler


@register_sampler("naive", needs=AutoregressiveSampleable, takes_prefix=True,
                  help="one full forward pass per pixel (the reference)")
@torch.no_grad()
def sample_naive(
    model: AutoregressiveSampleable,
    n: int,
    *,
    y: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    prefix: Prefix | None = None,
) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]` from an autoregressive model, in eval mode;
    with `prefix`, its known pixels are kept and only the rest is drawn. `callback` hears
    of each finished row."""
    c, h, w = model.config.image_shape
    device = next(model.parameters()).device
    values = start_values((c, h, w), n, prefix, device)
    first = prefix.pixels if prefix is not None else 0
    channel_steps: list[int | None] = list(range(c)) if model.channel_sequential else [None]
    for row in range(first // w, h):
        for col in range(first % w if row == first // w else 0, w):
            for channel in channel_steps:
                params = model(model.scale(model.from_targets(values)), y)
                pixel = params[:, :, row:row + 1, col:col + 1]
                draw = model.likelihood.sample(pixel, temperature, generator)[:, :, 0, 0]
                if channel is None:
                    values[:, :, row, col] = draw
                else:
                    values[:, channel, row, col] = draw[:, channel]
        report(callback, row + 1, h)
    return model.from_targets(values)
