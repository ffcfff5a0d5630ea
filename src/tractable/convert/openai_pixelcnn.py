"""Convert openai/pixel-cnn's TensorFlow PixelCNN++ checkpoint into a tractable model folder.

openai/pixel-cnn (`pixel_cnn_pp/model.py`, `nn.py`, `train.py`) builds the network inside
`tf.make_template('model', model_spec)`; every layer opens a variable scope named by a
per-kind counter in call order: `conv2d_N` and `deconv2d_N` hold `V`, `g`, `b` of a
weight-normed (transposed) conv, `dense_N` those of a `nin` (1×1) layer, and
`conditional_weights_N` the class projection `hw` of a conditional gated block. The
training script adds, per trainable variable, its Polyak average
`<name>/ExponentialMovingAverage` (`tf.train.ExponentialMovingAverage`) and two Adam slots
from `nn.adam_updates`, which passes its name strings as `tf.Variable`'s second
(`trainable`) argument, so they are saved unnamed as `Variable`, `Variable_1`, ... (as is
the label variable of a conditional run's sampler). Those are skipped knowingly.

The network's call order is the one `PixelCNNPlusPlus.up_pass` / `down_pass` walk, so the
mapping walks the tractable model in that order and counts like openai's `get_name`.
Axis orders: TF conv `V` is `[kh, kw, in, out]` (PyTorch `[out, in, kh, kw]`), TF transposed
conv `V` is `[kh, kw, out, in]` (PyTorch `[in, out, kh, kw]`), TF dense `V` is `[in, out]`
(our 1×1 `[out, in, 1, 1]`), `hw` is `[K, 2F]` (our `Linear.weight` `[2F, K]`). The output
layer's units are reordered from openai's mixture layout (logits, then per channel
[means, log-scales, coefficients]) to `DiscretizedLogisticMixture`'s (logits, means,
log-scales, coefficients, each channel-major).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from tractable.convert.tf_bundle import TFCheckpoint
from tractable.errors import CheckpointError
from tractable.models.pixelcnn_pp import (
    NUM_LEVELS,
    PixelCNNPlusPlus,
    PixelCNNPlusPlusConfig,
    _block_pairs,
)
from tractable.nn.gated_resnet import GatedResNet
from tractable.nn.weight_norm import NIN, WeightNormLayer

SCOPE = "model"
EMA_SUFFIX = "/ExponentialMovingAverage"
# `tf.Variable(value, "name")` variables: openai's Adam slots and the sampler's labels.
UNNAMED_VARIABLE = re.compile(r"^Variable(_\d+)?$")
PAPER_PARAMETERS = 53_659_080


@dataclass(frozen=True)
class Mapping:
    """One TF variable and the tractable state-dict entry it becomes."""

    tf_name: str
    tf_shape: tuple[int, ...]
    torch_name: str
    to_torch: Callable[[np.ndarray], np.ndarray]


def _conv(v: np.ndarray) -> np.ndarray:
    return v.transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]


def _deconv(v: np.ndarray) -> np.ndarray:
    return v.transpose(3, 2, 0, 1)  # [kh, kw, out, in] -> [in, out, kh, kw]


def _dense(v: np.ndarray) -> np.ndarray:
    return v.T[:, :, None, None]  # [in, out] -> [out, in, 1, 1]


def _identity(v: np.ndarray) -> np.ndarray:
    return v


def _transpose(v: np.ndarray) -> np.ndarray:
    return v.T


def mixture_unit_order(num_channels: int, num_mix: int) -> np.ndarray:
    """`order[r]`: openai's output unit for tractable's output unit `r` (C = 3 layout)."""
    if num_channels != 3:
        raise CheckpointError("openai/pixel-cnn's output layer models RGB images only")
    m = num_mix
    order = list(range(m))  # mixture logits come first in both
    for kind in range(3):  # means, log-scales, coupling coefficients
        for c in range(num_channels):
            order += [m + c * 3 * m + kind * m + j for j in range(m)]
    return np.array(order)


class _Namer:
    """openai's `get_name`: `kind_N`, counting per kind in call order."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return f"{SCOPE}/{kind}_{n}"


def _layer_mappings(scope: str, kind: str, prefix: str, layer: WeightNormLayer,
                    reorder: np.ndarray | None = None) -> list[Mapping]:
    """`V`, `g`, `b` of one weight-normed layer."""
    v_shape = tuple(layer.v.shape)
    tf_v: tuple[int, ...]
    if kind == "conv2d":
        tf_v, to_v = (v_shape[2], v_shape[3], v_shape[1], v_shape[0]), _conv
    elif kind == "deconv2d":
        tf_v, to_v = (v_shape[2], v_shape[3], v_shape[1], v_shape[0]), _deconv
    else:
        tf_v, to_v = (v_shape[1], v_shape[0]), _dense
    units = tuple(layer.g.shape)
    to_unit = _identity
    if reorder is not None:
        order, to_v_plain = reorder, to_v

        def to_v(v: np.ndarray) -> np.ndarray:
            return to_v_plain(v[:, order])

        def to_unit(t: np.ndarray) -> np.ndarray:  # type: ignore[misc]
            return t[order]

    return [Mapping(f"{scope}/V", tf_v, f"{prefix}.v", to_v),
            Mapping(f"{scope}/g", units, f"{prefix}.g", to_unit),
            Mapping(f"{scope}/b", units, f"{prefix}.b", to_unit)]


def variable_mappings(model: PixelCNNPlusPlus) -> list[Mapping]:
    """Every trainable openai variable of `model`'s architecture, in openai's creation order."""
    cfg = model.config
    if cfg.coord_conv or cfg.nonlocal_blocks:
        raise CheckpointError("openai/pixel-cnn has no coord_conv or non-local blocks")
    name = _Namer()
    names = {m: n for n, m in model.named_modules()}
    out: list[Mapping] = []

    def layer(kind: str, module: object, reorder: np.ndarray | None = None) -> None:
        assert isinstance(module, WeightNormLayer)
        out.extend(_layer_mappings(name(kind), kind, names[module], module, reorder))

    def block(b: GatedResNet) -> None:  # nn.gated_resnet's call order
        layer("conv2d", b.conv_in)
        if b.skip is not None:
            layer("dense", b.skip)
        layer("conv2d", b.conv_out)
        if b.cond is not None:
            two_f, k = b.cond.weight.shape
            out.append(Mapping(f"{name('conditional_weights')}/hw", (int(k), int(two_f)),
                               f"{names[b]}.cond.weight", _transpose))

    def stream(resize: str, resize_u: torch.nn.ModuleList, resize_ul: torch.nn.ModuleList,
               blocks_u: torch.nn.ModuleList, blocks_ul: torch.nn.ModuleList) -> None:
        """One pass (up or down) over the levels: from the second level on, its resizing
        layers, then each pair of blocks."""
        for level in range(NUM_LEVELS):
            if level > 0:
                layer(resize, resize_u[level - 1])
                layer(resize, resize_ul[level - 1])
            for bu, bul in _block_pairs(blocks_u[level], blocks_ul[level]):
                block(cast(GatedResNet, bu))
                block(cast(GatedResNet, bul))

    layer("conv2d", model.u_init)
    layer("conv2d", model.ul_init_down)
    layer("conv2d", model.ul_init_right)
    stream("conv2d", model.down_size_u, model.down_size_ul, model.up_u, model.up_ul)
    stream("deconv2d", model.up_size_u, model.up_size_ul, model.down_u, model.down_ul)
    assert isinstance(model.out, NIN)
    layer("dense", model.out, mixture_unit_order(cfg.image_shape[0], cfg.nr_logistic_mix))
    return out


def infer_config(ckpt: TFCheckpoint, image_size: int = 32) -> PixelCNNPlusPlusConfig:
    """The paper-family config whose variables a checkpoint holds (sizes read off shapes)."""
    first = f"{SCOPE}/conv2d_0/V"
    if first not in ckpt.entries:
        raise CheckpointError(f"{ckpt.prefix} is not an openai/pixel-cnn PixelCNN++ checkpoint "
                              f"(no {first!r}; it has e.g. {ckpt.names()[:3]})")
    kh, kw, c_in, filters = ckpt.shape(first)
    convs = sum(1 for n in ckpt.entries if re.fullmatch(rf"{SCOPE}/conv2d_\d+/V", n))
    # 3 input convs, 4 downsizing convs, 2 per gated block: 6·nr_resnet up, 6·nr_resnet + 4 down
    nr_resnet, rest = divmod(convs - 15, 24)
    denses = sorted(int(m.group(1)) for n in ckpt.entries
                    if (m := re.fullmatch(rf"{SCOPE}/dense_(\d+)/V", n)))
    if rest or nr_resnet < 0 or not denses:
        raise CheckpointError(f"{ckpt.prefix}: {convs} conv layers do not fit the PixelCNN++ "
                              "architecture of openai/pixel-cnn")
    out_units = ckpt.shape(f"{SCOPE}/dense_{denses[-1]}/V")[1]
    channels = c_in - 1
    if channels != 3 or out_units % 10:
        raise CheckpointError(f"{ckpt.prefix}: expected an RGB model with 10 outputs per "
                              f"mixture component, got {channels} channels, {out_units} outputs")
    cond = f"{SCOPE}/conditional_weights_0/hw"
    num_classes = ckpt.shape(cond)[0] if cond in ckpt.entries else 0
    return PixelCNNPlusPlusConfig(
        image_shape=(channels, image_size, image_size), num_classes=num_classes,
        nr_resnet=nr_resnet, nr_filters=filters, nr_logistic_mix=out_units // 10,
        dropout=0.5)


@dataclass
class Conversion:
    """A converted model with both weight sets and an account of the checkpoint."""

    model: PixelCNNPlusPlus
    ema_state: dict[str, torch.Tensor]
    raw_state: dict[str, torch.Tensor]
    num_parameters: int
    skipped: list[str]


def convert_checkpoint(source: str | os.PathLike[str] | TFCheckpoint,
                       image_size: int = 32) -> Conversion:
    """Read an openai/pixel-cnn checkpoint and map every variable onto `PixelCNNPlusPlus`.

    `source`: a checkpoint path (prefix, `.index`, data shard or folder) or an open one.
    `image_size`: the (square) images the model is for; the weights do not fix it.

    Raises `CheckpointError` naming any variable that is expected but missing, has the wrong
    shape, or is present but maps to nothing.
    """
    ckpt = source if isinstance(source, TFCheckpoint) else TFCheckpoint(source)
    config = infer_config(ckpt, image_size)
    model = PixelCNNPlusPlus(config)
    mappings = variable_mappings(model)
    expected = {m.tf_name for m in mappings} | {m.tf_name + EMA_SUFFIX for m in mappings}
    skipped = sorted(n for n in ckpt.entries if UNNAMED_VARIABLE.match(n))
    unmapped = sorted(set(ckpt.entries) - expected - set(skipped))
    missing = [n for m in mappings for n in (m.tf_name, m.tf_name + EMA_SUFFIX)
               if n not in ckpt.entries]
    problems = []
    if missing:
        problems.append(f"{len(missing)} variable(s) missing: {_listing(missing)}")
    if unmapped:
        problems.append(f"{len(unmapped)} variable(s) not mapped: {_listing(unmapped)}")
    for m in mappings:
        for n in (m.tf_name, m.tf_name + EMA_SUFFIX):
            if n in ckpt.entries and ckpt.shape(n) != m.tf_shape:
                problems.append(f"{n} has shape {list(ckpt.shape(n))}, expected "
                                f"{list(m.tf_shape)}")
    if problems:
        raise CheckpointError(f"{ckpt.prefix} does not match the openai/pixel-cnn PixelCNN++ "
                              f"of {_describe(config)}: " + "; ".join(problems))

    def state(suffix: str) -> dict[str, torch.Tensor]:
        out = {m.torch_name: torch.from_numpy(np.ascontiguousarray(
            m.to_torch(ckpt.read(m.tf_name + suffix).astype(np.float32)))) for m in mappings}
        out["initialized"] = torch.tensor(True)
        return out

    ema, raw = state(EMA_SUFFIX), state("")
    model.load_state_dict(ema, strict=True)
    counted = sum(int(np.prod(m.tf_shape)) for m in mappings)
    if counted != sum(p.numel() for p in model.parameters()):
        raise CheckpointError(f"mapped {counted} values but the model has "
                              f"{sum(p.numel() for p in model.parameters())} parameters")
    return Conversion(model.eval(), ema, raw, counted, skipped)


def write_model_folder(conversion: Conversion, out: str | os.PathLike[str],
                       source: str | None = None) -> Path:
    """`config.json`, `model.safetensors` (Polyak averages) and `raw.safetensors`."""
    out = Path(out)
    conversion.model.save_pretrained(out, raw_state=conversion.raw_state)
    if source is not None:
        from tractable._io import atomic_write_json

        atomic_write_json(out / "converted_from.json", {
            "source": "openai/pixel-cnn TensorFlow checkpoint", "checkpoint": source,
            "parameters": conversion.num_parameters,
            "skipped_optimizer_variables": len(conversion.skipped)})
    return out


def _describe(config: PixelCNNPlusPlusConfig) -> str:
    return (f"nr_resnet={config.nr_resnet}, nr_filters={config.nr_filters}, "
            f"nr_logistic_mix={config.nr_logistic_mix}, num_classes={config.num_classes}")


def _listing(names: list[str], limit: int = 8) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def variable_table(config: PixelCNNPlusPlusConfig) -> dict[str, Any]:
    """TF name -> shape of every trainable openai variable for `config` (for checks)."""
    return {m.tf_name: list(m.tf_shape) for m in variable_mappings(PixelCNNPlusPlus(config))}
