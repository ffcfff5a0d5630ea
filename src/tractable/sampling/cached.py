"""The cached autoregressive sampler (Ramachandran et al., 2017, "Fast Generation for
Convolutional Autoregressive Models").

The naive sampler (`tractable.sampling.naive`) reruns the whole network for every pixel,
recomputing activations that cannot have changed. Here each activation is computed once,
at the raster step where it becomes final, from cached activations; the total work is
about one forward pass plus a small per-pixel overhead (`docs/sampling.md` has numbers).
The model-specific part is a *cached network* (`tractable.sampling.protocol.CachedNetwork`)
that each family builds from its own weights and returns from `model.cached_network(batch,
y)`; the networks live beside their families (`tractable.models.pixelcnn_pp_cached`,
`tractable.models.gated_pixelcnn_cached`), and this module knows none of them.

The generator is consumed exactly as the naive sampler consumes it — one
`likelihood.sample(params [B, P, 1, 1], temperature, generator)` per pixel (per channel
step for channel-sequential models), in raster order — so both samplers give the same
images from the same generator: exactly in float64, and up to float rounding of the
params (< 1e-4) in float32, which may rarely flip a sampled value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from tractable.sampling.naive import sample_naive
from tractable.sampling.prefix import Prefix, start_values
from tractable.sampling.progress import Callback, report
from tractable.sampling.protocol import AutoregressiveSampleable, CachedNetwork
from tractable.sampling.registry import check_sample_args, register_sampler


@register_sampler("cached", needs=AutoregressiveSampleable, takes_prefix=True,
                  help="each activation computed once from cached ones (default; families "
                       "without a cached network fall back to naive)")
def sample_cached(
    model: AutoregressiveSampleable,
    n: int,
    *,
    y: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    prefix: Prefix | None = None,
) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]`; same arguments and samples as `sample_naive`.

    Models without a cached form fall back to the naive sampler.
    """
    with torch.inference_mode():  # cheaper per op than no_grad; see `run_cached`
        net = model.cached_network(n, y)
        if net is not None:
            images, _ = run_cached(model, net, n, temperature, generator, callback,
                                   prefix=prefix)
    if net is None:
        return sample_naive(model, n, y=y, temperature=temperature, generator=generator,
                            callback=callback, prefix=prefix)
    return images.clone()  # a normal tensor: callers may modify it in place


def sample_cached_with_params(
    model: AutoregressiveSampleable,
    n: int,
    y: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Like `sample_cached`, also returning the params `[n, P, H, W]` each pixel was drawn
    from (for channel-sequential models, those of the last channel step, which equal a
    full forward pass on the finished image)."""
    y, temperature = check_sample_args(model, n, y, temperature, generator)
    with torch.inference_mode():
        net = model.cached_network(n, y)
        if net is None:
            raise TypeError(f"{type(model).__name__} has no cached form")
        images, params = run_cached(model, net, n, temperature, generator, None,
                                    keep_params=True)
    assert params is not None
    return images.clone(), params.clone()


# (row, col, channel or None for the whole pixel, params [n, P]) -> sets those values
Fill = Callable[[int, int, int | None, Tensor], None]


def walk_cached(model: AutoregressiveSampleable, net: CachedNetwork, values: Tensor,
                fill: Fill, first: int = 0) -> Iterator[tuple[int, int, Tensor]]:
    """The one raster walk of a cached network over likelihood values `[n, C, H, W]`.

    At every channel step of every pixel from the `first` on, `net` observes the pixel as
    the naive forward pass sees it (channels not yet set hold the input of a zero value)
    and `fill(row, col, channel, params)` sets the step's values (`channel` None: every
    channel at once); the `first` pixels are known and only observed. The sampler draws
    in `fill`, the compression coder codes there (`tractable.compression.codec`). Yields
    `(row, col, params of the pixel's last step)` once the pixel is observed whole."""
    c, h, w = values.shape[1:]
    steps: list[int | None] = list(range(c)) if model.channel_sequential else [None]

    def network_input(row: int, col: int) -> Tensor:  # [n, C], as the naive forward sees it
        return model.scale(model.from_targets(values[:, :, row, col]))

    unset = model.scale(model.from_targets(torch.zeros_like(values[:, :, 0, 0])))
    for row in range(h):
        net.start_row(row)
        for col in range(w):
            known = row * w + col < first
            if known:  # a prefix pixel: all its channels are visible at once, nothing set
                if net.reads_current_pixel:
                    net.observe(row, col, network_input(row, col))
                params = net.params_at(row, col).t()
            for step, channel in enumerate([] if known else steps):
                if net.reads_current_pixel:
                    net.observe(row, col, unset if step == 0 else network_input(row, col))
                params = net.params_at(row, col).t()  # [n, P]
                fill(row, col, channel, params)
            net.observe(row, col, network_input(row, col))
            yield row, col, params


@torch.inference_mode()
def run_cached(
    model: AutoregressiveSampleable,
    net: CachedNetwork,
    n: int,
    temperature: float,
    generator: torch.Generator | None,
    callback: Callback | None,
    keep_params: bool = False,
    prefix: Prefix | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The sampling loop: the naive sampler's, with `net` in place of full forward passes
    (`walk_cached`, drawing each step's values from its params).

    With a `prefix`, its pixels are fed through `net` as known values (their activations
    are computed once, as for sampled pixels, but nothing is drawn for them) and drawing
    starts at the first unknown pixel.

    Runs in inference mode (as must `net`'s construction): the tensors it returns are
    inference tensors.
    """
    c, h, w = model.config.image_shape
    device = next(model.parameters()).device
    values = start_values((c, h, w), n, prefix, device)
    kept: Tensor | None = None

    def draw(row: int, col: int, channel: int | None, params: Tensor) -> None:
        drawn = model.likelihood.sample(params[:, :, None, None], temperature,
                                        generator)[:, :, 0, 0]
        if channel is None:
            values[:, :, row, col] = drawn
        else:
            values[:, channel, row, col] = drawn[:, channel]

    first = prefix.pixels if prefix is not None else 0
    for row, col, params in walk_cached(model, net, values, draw, first):
        if keep_params:
            if kept is None:
                kept = params.new_zeros(n, params.shape[1], h, w)
            kept[:, :, row, col] = params
        if col == w - 1:
            report(callback, row + 1, h)
    return model.from_targets(values), kept
