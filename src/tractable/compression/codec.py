"""Lossless image compression with an autoregressive model's exact likelihood.

An exact likelihood is a code length: with a range coder, an image costs −log₂ p(x) bits
plus a few bits per file (Shannon, 1948; MacKay, 2003, ch. 6). Each sub-pixel is coded
with its exact discrete distribution given everything before it in raster order (and,
for PixelCNN++, given the earlier channels of its pixel), quantized to integer
frequencies (`frequencies`).

Determinism, the hard part: the decoder must compute the very same frequencies the
encoder used, from pixels it has only just decoded. So both run one function,
`code_pixels`, that walks the image exactly as the decoder must — the model's *cached*
incremental network (Ramachandran et al., 2017), pixel by pixel, channel by channel, in
float64, over the same fixed batch of images — and differ only in the step that turns a
sub-pixel's frequencies into its value: the encoder codes the known value, the decoder
reads it. The encoder never uses the parallel forward pass, whose params differ from the
incremental ones in the last bits. Params are rounded to a 2^-20 grid before they become
probabilities, and the file carries the sha256 of the pixels, checked after decoding:
a decode that would differ fails with `CompressedFileError`, it never returns wrong
pixels (`docs/compression.md` states the guarantee).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from tractable.compression.coder import Decoder, Encoder, coder_name
from tractable.compression.container import Header, pack, unpack
from tractable.compression.frequencies import (
    PARAM_GRID_BITS,
    PRECISION_BITS,
    frequencies,
    round_params,
)
from tractable.compression.identity import model_identity
from tractable.compression.protocol import CodableModel
from tractable.errors import CompressedFileError, ConfigError, ShapeError
from tractable.nn.conditioning import check_label_values
from tractable.sampling.cached import walk_cached

DEFAULT_BATCH = 64
# Intra-op threads while coding: the per-pixel ops are tiny, so more threads only add
# synchronization (on a loaded 2-core CPU, 2 threads coded 26-75x slower than 1), and one
# thread keeps the arithmetic independent of the caller's thread setting.
DEFAULT_THREADS = 1
NUMERICS = f"float64 cached network, params on a 2^-{PARAM_GRID_BITS} grid, " \
           f"{PRECISION_BITS}-bit frequencies"

# (the known values [B] or None when decoding, their frequencies [B, K]) -> the values [B]
Step = Callable[[Tensor | None, Tensor], Tensor]


def check_codable(model: Any) -> CodableModel:
    """`model` if the coder can drive it, else a one-line `ConfigError` saying why not."""
    family = getattr(model, "family", type(model).__name__)
    if not isinstance(model, CodableModel) or not hasattr(model.likelihood, "channel_probs"):
        raise ConfigError(f"compression is not supported for the {family} family: it codes "
                          "with an autoregressive model's per-sub-pixel distributions (flows "
                          "would need bits-back coding)")
    return model


def float64_copy(model: CodableModel) -> CodableModel:
    """An eval-mode float64 copy of `model` on its device (the model itself is untouched)."""
    twin = copy.deepcopy(model)
    twin.train(False)
    return twin.double()  # type: ignore[attr-defined, no-any-return]


@torch.inference_mode()
def code_pixels(model: CodableModel, n: int, y: Tensor | None, step: Step,
                known: Tensor | None = None) -> Tensor:
    """Walk every sub-pixel of `n` images in raster order, the one path both ways.

    At each sub-pixel the cached network gives the params, the likelihood the exact
    distribution given the pixel's earlier channels, `frequencies` the integers, and
    `step` the value (coding `known[:, c, i, j]` when encoding). The walk is the cached
    sampler's own (`tractable.sampling.cached.walk_cached`): unset channels hold the input
    of a zero value until they are known. Returns the likelihood values, long
    `[n, C, H, W]`.
    """
    net = model.cached_network(n, y)
    if net is None:
        raise ConfigError(f"the {model.family} model has no cached network to code with")
    c, h, w = model.config.image_shape
    device = next(model.parameters()).device
    values = torch.zeros(n, c, h, w, dtype=torch.long, device=device)

    def code(row: int, col: int, channel: int | None, params: Tensor) -> None:
        params = round_params(params)  # [n, P]
        for k in range(c) if channel is None else [channel]:
            probs = model.likelihood.channel_probs(params, k, values[:, :k, row, col])
            given = None if known is None else known[:, k, row, col]
            values[:, k, row, col] = step(given, frequencies(probs))

    for _ in walk_cached(model, net, values, code):
        pass
    return values


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op threads (None: as set), restoring them after."""
    before = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ShapeError(f"threads must be a positive integer or None, got {threads!r}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _label_freqs(n: int, num_classes: int, device: torch.device) -> Tensor:
    return frequencies(torch.ones(n, num_classes, dtype=torch.float64, device=device))


def _check_labels(model: CodableModel, x: Tensor, y: Tensor | None) -> Tensor | None:
    k = model.config.num_classes
    if not k:
        if y is not None:
            raise ShapeError(f"this {model.family} model is unconditional: pass no labels")
        return None
    if y is None:
        raise ShapeError(f"this {model.family} model is class-conditional: pass the "
                         f"images' labels (y, {k} classes)")
    if (not isinstance(y, Tensor) or y.dim() != 1 or len(y) != len(x)
            or y.is_floating_point() or y.is_complex()):
        raise ShapeError(f"labels must be {len(x)} class indices, shape [{len(x)}] (class "
                         "weights cannot be coded)")
    y = y.long().cpu()
    check_label_values(y, k)
    return y


def pixels_digest(x: Tensor, y: Tensor | None) -> str:
    """sha256 of uint8 pixels (C order) and then the int64 labels, if any."""
    digest = hashlib.sha256(x.contiguous().cpu().numpy().tobytes())
    if y is not None:
        digest.update(y.long().contiguous().cpu().numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def compress_images(model: Any, x: Tensor, y: Tensor | None = None,
                    batch: int = DEFAULT_BATCH, model_ref: str | None = None,
                    threads: int | None = DEFAULT_THREADS, names: Sequence[str] = ()
                    ) -> bytes:
    """Code uint8 images `[N, C, H, W]` (and their labels, for a conditional model)
    losslessly with `model`; the bytes `decompress_images` reads back.

    `batch`: images coded together (one stream each; the decoder uses the same layout);
    `model_ref`: how to load the model again, recorded as a hint (e.g. "pretrained:NAME");
    `threads`: torch's intra-op threads while coding (None: leave the caller's setting);
    `names`: a file name per image, recorded for the decoder's output (optional).
    The cost is −log₂ p(x) of each image under the model plus ~4 bytes per batch and the
    header (a few hundred bytes). Images an N-level model cannot represent are refused.
    """
    model = check_codable(model)
    model.check_images(x)
    if len(x) == 0:
        raise ShapeError("no images to compress")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ShapeError(f"batch must be a positive integer, got {batch!r}")
    x = x.cpu()
    labels = _check_labels(model, x, y)
    targets = model.targets(x)
    if not torch.equal(model.from_targets(targets), x):
        raise ShapeError(f"these images have values this model cannot represent (it models "
                         f"{getattr(model.config, 'n_levels', '?')} levels): lossless coding "
                         "needs images on its levels")
    if names and (len(names) != len(x) or not all(isinstance(n, str) for n in names)):
        raise ShapeError(f"names must be {len(x)} strings, one per image")
    with torch_threads(threads):
        streams = _encode_chunks(model, targets, labels, batch)
    c, h, w = model.config.image_shape
    header = Header(model=model_identity(model), family=model.family, shape=[c, h, w],
                    count=len(x), batch=batch, num_classes=model.config.num_classes,
                    chunks=[len(s) for s in streams], pixels_sha256=pixels_digest(x, labels),
                    coder=coder_name(), numerics=NUMERICS, torch=torch.__version__,
                    model_ref=model_ref, extra={"names": list(names)} if names else {})
    return pack(header, streams)


def _encode_chunks(model: CodableModel, targets: Tensor, labels: Tensor | None,
                   batch: int) -> list[bytes]:
    """One coded stream per `batch` images: their labels (uniform), then their pixels."""
    twin = float64_copy(model)
    device = next(twin.parameters()).device
    streams = []
    for start in range(0, len(targets), batch):
        chunk = targets[start:start + batch].to(device)
        encoder = Encoder()
        y_chunk = None
        if labels is not None:
            y_chunk = labels[start:start + batch].to(device)
            if model.config.num_classes > 1:
                encoder.code(y_chunk, _label_freqs(len(chunk), model.config.num_classes,
                                                   device))
        code_pixels(twin, len(chunk), y_chunk, encoder.code, known=chunk)
        streams.append(encoder.finish())
    return streams


def read_header(data: bytes, name: str = "the file") -> Header:
    """The header of compressed `data` (checked: magic, format, trailer checksum)."""
    header, _ = unpack(data, name)
    return header


def decompress_images(data: bytes, model: Any, name: str = "the file",
                      threads: int | None = DEFAULT_THREADS) -> tuple[Tensor, Tensor | None]:
    """The images (uint8 `[N, C, H, W]`) and labels (long `[N]`, or None) that
    `compress_images` coded into `data`, bit for bit, with the same `model`.

    Raises `CompressedFileError` (one line) for an empty, foreign, corrupt or truncated
    file, one written with another model, or a decode whose pixels fail the checksum.
    """
    header, streams = unpack(data, name)
    return decompress_unpacked(header, streams, model, name, threads)


def decompress_unpacked(header: Header, streams: list[bytes], model: Any,
                        name: str = "the file", threads: int | None = DEFAULT_THREADS
                        ) -> tuple[Tensor, Tensor | None]:
    """`decompress_images` of a file already unpacked (`container.unpack`: its header
    read before the model is loaded, the file checked and split once)."""
    model = check_codable(model)
    if header.family != model.family or header.model != model_identity(model):
        raise CompressedFileError(
            f"{name} was written with another model ({header.family} {header.model[:12]}, "
            f"loaded as {header.model_ref or 'unknown'}); this is {model.family} "
            f"{model_identity(model)[:12]}: decode it with the model that wrote it")
    if header.numerics != NUMERICS:
        raise CompressedFileError(f"{name} was coded with other numerics ({header.numerics})")
    c, h, w = model.config.image_shape
    if header.shape != [c, h, w] or header.num_classes != model.config.num_classes:
        raise CompressedFileError(f"{name}: its image shape {header.shape} does not match "
                                  "the model's")
    with torch_threads(threads):
        x, y = _decode_chunks(model, header, streams, name)
    if pixels_digest(x, y) != header.pixels_sha256:
        build = ("" if header.torch == torch.__version__
                 else f"; it was written with torch {header.torch}, this is {torch.__version__}")
        if header.coder != coder_name():
            build += f"; its coder was {header.coder}, this is {coder_name()}"
        raise CompressedFileError(f"{name} decodes to pixels that fail its checksum: this "
                                  f"machine's arithmetic differs from the encoder's{build}")
    return x, y


def _decode_chunks(model: CodableModel, header: Header, streams: list[bytes], name: str
                   ) -> tuple[Tensor, Tensor | None]:
    twin = float64_copy(model)
    device = next(twin.parameters()).device
    images, labels = [], []
    for index, stream in enumerate(streams):
        n = min(header.batch, header.count - index * header.batch)
        try:
            decoder = Decoder(stream)
            y_chunk = None
            if header.num_classes:
                y_chunk = (decoder.code(None, _label_freqs(n, header.num_classes, device))
                           if header.num_classes > 1
                           else torch.zeros(n, dtype=torch.long, device=device))
                labels.append(y_chunk.cpu())
            values = code_pixels(twin, n, y_chunk, decoder.code)
        except (ValueError, RuntimeError, OverflowError) as e:
            raise CompressedFileError(f"{name}: chunk {index} does not decode ({e})") from None
        images.append(model.from_targets(values).cpu())
    return torch.cat(images), (torch.cat(labels) if labels else None)
