"""The contract every model family meets (`docs/architecture.md`, "The family contract").

Images enter and leave as `uint8 [B, C, H, W]`; scaling to the network's input range
happens inside the model. Every model gives exact discrete log-likelihoods in nats per
image, bits/dim, a training loss, samples, and a save/load contract: a saved model is a
folder with `config.json` (see `tractable.config`) and `model.safetensors`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tractable._io import atomic_path
from tractable.compression import compress_images
from tractable.config import (
    CONFIG_NAME,
    ModelConfig,
    TrainingDefaults,
    read_config_json,
    save_config,
)
from tractable.errors import CheckpointError, ConfigError, ShapeError
from tractable.run_folder import model_dir_of
from tractable.sampling import sample_with

WEIGHTS_NAME = "model.safetensors"  # EMA (Polyak) weights when saved by the trainer
RAW_WEIGHTS_NAME = "raw.safetensors"  # the optimizer's current weights
WEIGHT_FILES = {"ema": WEIGHTS_NAME, "raw": RAW_WEIGHTS_NAME}


class TractableModel(nn.Module):
    """Base class: an exact-likelihood image model over `uint8 [B, C, H, W]` images."""

    family: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    default_sampler: ClassVar[str] = ""  # the registered sampler `sample` uses
    # Named field-value tables for `tractable train --preset NAME` (e.g. "small", "paper").
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # Field values of a tiny model for the family contract tests (tests/test_family_contract):
    # fast on a CPU, valid for 8×8 images with 1 or 3 channels, conditional or not.
    tiny_settings: ClassVar[dict[str, Any]] = {}
    # Training in channels_last (NHWC) unless the run says otherwise: measured faster for
    # the family (with the same numerics); see `TrainConfig.channels_last`.
    prefers_channels_last: ClassVar[bool] = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config

    def compile_after_steps(self, device: torch.device) -> int | None:
        """Training runs of at least this many steps compile by default on `device`: where
        the compiled step's saving repays the compiler's warm-up, as measured
        (`bench/train_throughput.py --warm-up`). None (the default): never unasked."""
        return None

    # ---- what each family implements -------------------------------------------------
    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Exact discrete log-likelihood of each image, in nats: `Tensor[B]`."""
        raise NotImplementedError

    def loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """What training minimizes, and metrics; `metrics["bpd"]` is always true bits/dim."""
        bpd = self.bits_per_dim(x, y).mean()
        return bpd, {"bpd": bpd.detach()}

    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw `n` images, `uint8 [n, C, H, W]`, with the family's `default_sampler` (in
        eval mode; `tractable.sampling` checks the arguments the same way for every family).
        """
        return sample_with(self, n, sampler=self.default_sampler, y=y,
                           temperature=temperature, generator=generator)

    def compress(self, x: Tensor, y: Tensor | None = None, batch: int = 64,
                 threads: int | None = 1) -> bytes:
        """Code uint8 images `[N, C, H, W]` (and, for a conditional model, their labels)
        losslessly at about this model's bits/dim; `tractable.decompress(data, model)`
        gives them back bit for bit. Needs an autoregressive family (a cached network and
        per-sub-pixel distributions, `tractable.compression.protocol`); other families
        raise `ConfigError`. `batch`: images coded together (the decoder follows it);
        `threads`: torch's intra-op threads while coding (None: the current setting)."""
        return compress_images(self, x, y, batch=batch, threads=threads)

    def data_dependent_init(self, x: Tensor, y: Tensor | None = None) -> None:  # noqa: B027
        """Initialize from a data batch before training (weight norm, ActNorm). Default: none."""

    @classmethod
    def training_defaults(cls) -> TrainingDefaults:
        """The paper's optimizer settings for this family."""
        return TrainingDefaults()

    # ---- shared behaviour ------------------------------------------------------------
    @property
    def num_dims(self) -> int:
        c, h, w = self.config.image_shape
        return c * h * w

    def bits_per_dim(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """NLL in bits per sub-pixel: `-log_prob / (C·H·W·ln 2)`, `Tensor[B]`."""
        return -self.log_prob(x, y) / (self.num_dims * math.log(2.0))

    @property
    def bits_per_dim_label(self) -> str:
        """How logs and tables name this model's bits/dim (families override, e.g. N-level)."""
        return "bits/dim"

    def check_images(self, x: Tensor) -> None:
        """Raise `ShapeError` unless `x` is a `uint8 [B, C, H, W]` batch this model fits."""
        if not isinstance(x, Tensor):
            raise ShapeError(f"images must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.uint8:
            raise ShapeError(f"images must be uint8 (0..255), got dtype {x.dtype}")
        if x.dim() != 4:
            raise ShapeError(f"images must be [B, C, H, W], got shape {list(x.shape)}")
        if tuple(x.shape[1:]) != tuple(self.config.image_shape):
            c, h, w = self.config.image_shape
            raise ShapeError(
                f"this model expects images of shape [B, {c}, {h}, {w}] "
                f"(channels={c}), got {list(x.shape)}"
            )

    def save_pretrained(
        self, directory: str | os.PathLike[str], raw_state: dict[str, Tensor] | None = None
    ) -> None:
        """Write `config.json` and `model.safetensors` (and `raw.safetensors` if given)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_config(directory, self.family, self.config)
        _save_weights(directory / WEIGHTS_NAME, self.state_dict())
        if raw_state is not None:
            _save_weights(directory / RAW_WEIGHTS_NAME, raw_state)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        weights: str = WEIGHTS_NAME,
        map_location: str | torch.device = "cpu",
    ) -> TractableModel:
        """Rebuild a model from its folder (or a training run's folder), in eval mode.

        Eval mode is how a saved model is used (no dropout; call `.train()` to fine-tune),
        as with Hugging Face's `from_pretrained`. `weights`: "ema" (the Polyak-averaged
        weights, default), "raw" (the optimizer's), or a file name in the model folder.
        The config is type- and range-checked, and its size estimated, before anything is
        allocated. Called on the base class, it picks the family from `config.json`.
        `directory` may also be `pretrained:NAME` or `hf:ORG/NAME[@REV]` (`tractable.hub`).
        """
        from tractable.hub import resolve
        from tractable.models.registry import model_class

        model_dir = model_dir_of(resolve(directory, WEIGHT_FILES.get(weights, weights)))
        family, cfg_dict = read_config_json(model_dir)
        klass = model_class(family)
        if cls is not TractableModel and not issubclass(klass, cls):
            raise ConfigError(f"{directory} holds a {family!r} model, not a {cls.family!r} one")
        config = klass.config_class.from_dict(cfg_dict)
        check_parameter_memory(klass, config, model_dir / CONFIG_NAME)
        model = klass(config)
        file = WEIGHT_FILES.get(weights, weights)
        model.load_state_dict(_load_weights(model_dir / file), strict=True)
        return model.to(map_location).eval()

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Publish this model to the Hugging Face Hub repo `repo_id` (`tractable.hub`).

        Returns `hf:ORG/NAME@COMMIT`, which `tractable.load` accepts.
        """
        from tractable.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As `nn.Module.load_state_dict`, but a mismatch raises a readable `CheckpointError`."""
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as e:
            raise CheckpointError(
                f"weights do not fit this {self.family} model (config and weights from "
                f"different runs?): {str(e).splitlines()[0]} ..."
            ) from None


def _save_weights(path: Path, state: dict[str, Tensor]) -> None:
    # safetensors refuses shared or non-contiguous storage: store independent copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def _load_weights(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None


def load(directory: str | os.PathLike[str], weights: str = WEIGHTS_NAME,
         map_location: str | torch.device = "cpu") -> TractableModel:
    """Load any saved model, from its folder or a training run's folder, in eval mode;
    also `pretrained:NAME` (`tractable models` lists them) or `hf:ORG/NAME[@REV]` (the Hub).

    `weights`: "ema" (default), "raw", or a weights file name (`from_pretrained`).
    """
    return TractableModel.from_pretrained(directory, weights=weights, map_location=map_location)


def parameter_count(klass: type[TractableModel], config: ModelConfig) -> int | None:
    """Parameters a `klass(config)` model would have, counted without allocating memory (the
    model is built on the meta device); None if the count overflows."""
    try:
        with torch.device("meta"):
            model = klass(config)
    except (RuntimeError, OverflowError, MemoryError):
        return None
    return sum(p.numel() for p in model.parameters())


def memory_bytes() -> int | None:
    """This machine's physical memory, if the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_parameter_memory(klass: type[TractableModel], config: ModelConfig,
                           source: str | os.PathLike[str] = "the config") -> None:
    """Raise `ConfigError` if the model's float32 parameters would not fit in this machine's
    memory (weights load through it), with the estimate in the message."""
    count = parameter_count(klass, config)
    limit = memory_bytes()
    if count is not None and (limit is None or 4 * count <= limit):
        return
    size = "more than 2^63 parameters" if count is None else (
        f"~{count:.3g} parameters ({4 * count / 2**30:,.1f} GiB of float32)")
    have = f"this machine's {limit / 2**30:,.0f} GiB of memory" if limit else "any memory"
    raise ConfigError(f"{source} describes a {klass.family} model with {size}, more than "
                      f"{have}; the config is corrupt or not meant for this machine")
