"""The contract every model family meets (`docs/architecture.md`, "The family contract").

Images enter and leave as `uint8 [B, C, H, W]`; scaling to the network's input range
happens inside the model. Every model gives exact discrete log-likelihoods in nats per
image, bits/dim, a training loss, samples, and a save/load contract: a saved model is a
folder with `config.json` (see `tractable.config`) and `model.safetensors`.
"""

from __future__ import annotations

import math
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tractable._io import atomic_path
from tractable.config import (
    CONFIG_NAME,
    ModelConfig,
    TrainingDefaults,
    read_config_json,
    save_config,
)
from tractable.devices import pick_device, pick_dtype
from tractable.errors import CheckpointError, ConfigError, ShapeError
from tractable.run_folder import (
    RAW_WEIGHTS_NAME,
    WEIGHT_FILES,
    WEIGHTS_NAME,
    Folder,
    model_dir_of,
    weights_file,
)
from tractable.sampling import Callback, sample_with

__all__ = ["RAW_WEIGHTS_NAME", "WEIGHTS_NAME", "WEIGHT_FILES", "TractableModel", "load"]

# True while `_load` builds a model whose memory it has just estimated.
_MEMORY_CHECKED: ContextVar[bool] = ContextVar("memory_checked", default=False)


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
        """Validate `config` and check that its parameters fit this machine's memory
        (estimated on the meta device) before a subclass allocates any."""
        super().__init__()
        config.validate()
        if torch.get_default_device().type != "meta" and not _MEMORY_CHECKED.get():
            check_parameter_memory(type(self), config)  # (not the estimate's own build)
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
        *,
        y: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        """Draw `n` images, `uint8 [n, C, H, W]`: the one sampling surface of every family.

        `y`: class indices `[n]` or class weights `[n, K]` (conditional models);
        `temperature` scales the sampling distributions (1 = the model itself; 0 only where
        the sampler defines the limit); `generator` makes the draw reproducible; `sampler`:
        a registered sampler's name (default: the family's `default_sampler`; the ones a
        model admits: `tractable.sampling.samplers_for(model)`); `callback` receives a
        `tractable.sampling.Progress(step, total, unit)` as the draw advances. Runs in
        eval mode (the model's mode is restored); every argument is checked by the sampler
        registry, the same way for every family.
        """
        return sample_with(self, n, sampler=sampler or self.default_sampler, y=y,
                           temperature=temperature, generator=generator, callback=callback)

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

    def as_seen(self, x: Tensor) -> Tensor:
        """uint8 images as this model sees them (what it scores and completes): unchanged by
        default; a family with coarser levels quantizes (e.g. an N-level Gated PixelCNN)."""
        return x

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
        directory: str | os.PathLike[str] | Folder,
        weights: str = "ema",
        map_location: str | torch.device | None = None,
        *,
        device: str | torch.device | None = None,
        torch_dtype: str | torch.dtype | None = None,
    ) -> TractableModel:
        """`tractable.load` (the one loader), also checking the folder holds this class's
        family; `map_location` is the older name of `device`. On the base class, any family.
        """
        return _load(cls, directory, weights, device if device is not None else map_location,
                     torch_dtype)

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
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    bad = [k for k, v in state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # it would score every image NaN and draw black images
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN/inf in {len(bad)} tensor(s), e.g. "
            f"{bad[0]}); it cannot give likelihoods or samples. Use a run's earlier "
            "checkpoint, or train again")
    return state


def load(source: str | os.PathLike[str] | Folder, *, weights: str = "ema",
         device: str | torch.device | None = None,
         dtype: str | torch.dtype | None = None) -> TractableModel:
    """Load any saved model, in eval mode: the one way in for the library, every command and
    the app.

    `source`: a saved-model folder, a training run's folder, `pretrained:NAME` (`tractable
    models` lists them), `hf:ORG/NAME[@REV]` (the Hub, `tractable.hub`), or a `Folder`
    already opened with `tractable.run_folder.open_folder` (nothing is resolved twice).
    `weights`: "ema" (the Polyak-averaged weights, default), "raw" (the optimizer's) or a
    weights file name in the model folder. `device`: None (the CPU), "auto" (a GPU if there
    is one), "cpu", "cuda", "cuda:N" or a `torch.device` (`tractable.devices`). `dtype`:
    None (float32 as saved) or a float type, e.g. torch.float64 / "float64".

    Eval mode is how a saved model is used (no dropout; call `.train()` to fine-tune), as
    with Hugging Face's `from_pretrained`. The config is type- and range-checked, and its
    size estimated, before anything is allocated.
    """
    return _load(TractableModel, source, weights, device, dtype)


def _load(cls: type[TractableModel], source: str | os.PathLike[str] | Folder, weights: str,
          device: str | torch.device | None, dtype: str | torch.dtype | None
          ) -> TractableModel:
    from tractable.models.registry import model_class

    model_dir = (source.model_dir if isinstance(source, Folder)
                 else model_dir_of(source, weights=weights))
    family, cfg_dict = read_config_json(model_dir)
    klass = model_class(family)
    if cls is not TractableModel and not issubclass(klass, cls):
        where_from = model_dir if isinstance(source, Folder) else source
        raise ConfigError(f"{where_from} holds a {family!r} model, not a {cls.family!r} one")
    config = klass.config_class.from_dict(cfg_dict)
    check_parameter_memory(klass, config, model_dir / CONFIG_NAME)
    where, float_type = pick_device(device), pick_dtype(dtype)
    checked = _MEMORY_CHECKED.set(True)  # just now, naming the file: not again in __init__
    try:
        model = klass(config)
    finally:
        _MEMORY_CHECKED.reset(checked)
    model.load_state_dict(_load_weights(model_dir / weights_file(weights)), strict=True)
    return model.to(device=where, dtype=float_type).eval()


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
