"""What a run says before it starts: one start-up line, a size warning, then an ETA.

    train: pixelcnn++ (preset small, 10 classes), 585,406 parameters | cpu fp32 | mnist-mini
    1x28x28, 9,000 train / 1,000 test images | batch 8 | 2,400 steps (2.1 epochs) | runs/demo
    eta: 0.161 s/step (median of steps 6-25, after 5 warm-up steps): about 6 min 21 s ...

A model far too large for the device (millions of parameters on a CPU) or for the data
(more parameters than training sub-pixels) gets a warning that names the family's smallest
preset and its parameter count, so `--model pixelcnn++` without `--preset` (the 53.7M
parameter paper model) is never a silent surprise.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from tractable.models.base import TractableModel

if TYPE_CHECKING:
    from tractable.training.trainer import Trainer

CPU_PARAMETER_LIMIT = 5_000_000  # above this a CPU step of a PixelCNN takes seconds per image
DATA_PARAMETER_FLOOR = 1_000_000  # toy subsets (--limit-train 64) of small models: no warning
ETA_WARMUP_STEPS = 5  # untimed first steps: compiler warm-up, caches, allocator
ETA_WINDOW = 20  # the ETA is the median step time over this many latest steps ...
ETA_AFTER_S = 10.0  # ... reported when the window is full or this much time has passed
ETA_AFTER_STEPS = ETA_WARMUP_STEPS + ETA_WINDOW  # the step of the first report, at the latest
ETA_UPDATE_S = 300.0  # a later report: at least this much training time after the last ...
ETA_CHANGE = 0.25  # ... and only if the estimate moved by more than this fraction


def announce(trainer: Trainer, step: int) -> None:
    """Rank 0 prints the start-up line (and a size warning, and why it compiles) before
    the slow parts: the data-dependent init, the steps."""
    if not trainer.env.is_main:
        return
    model, cfg, env = trainer.model, trainer.cfg, trainer.env
    params = parameter_count(model)
    shape = tuple(model.config.image_shape)
    n_train = len(trainer.stream.images)
    n_test = len(trainer.test_set) if trainer.test_set is not None else None  # type: ignore[arg-type]
    print(startup_line(model, trainer.preset, params, env.device, env.world_size,
                       dataclasses.replace(cfg, channels_last=trainer.channels_last,
                                           compile=trainer.compiled),
                       trainer.opt_cfg.batch_size, cfg.data, shape, n_train, n_test,
                       trainer.total_steps, trainer.stream.steps_per_epoch, step, cfg.out),
          flush=True)
    warning = size_warning(model, params, env.device, shape, n_train)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if trainer.compiled and cfg.compile is None and not cfg.quiet:
        after = model.compile_after_steps(env.device)
        print(f"compile: on by default for this {model.family} model's runs of at least "
              f"{after:,} steps; the first steps compile (warm-up), --no-compile skips it",
              file=sys.stderr)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _data_text(name: str, shape: Sequence[int], n_train: int, n_test: int | None) -> str:
    c, h, w = shape
    test = f" / {n_test:,} test" if n_test is not None else ", no test set"
    return f"{name} {c}x{h}x{w}, {n_train:,} train{test} images"


def startup_line(model: TractableModel, preset: str | None, params: int, device: torch.device,
                 world_size: int, config: Any, batch_size: int, data: str,
                 shape: Sequence[int], n_train: int, n_test: int | None, total_steps: int,
                 steps_per_epoch: int, step: int = 0, out: str | None = None) -> str:
    """The one line a run prints first (see the module docstring); `n_test` None: no test
    set."""
    k = model.config.num_classes
    model_bits = [f"preset {preset}" if preset else "no preset"]
    if k:
        model_bits.append(f"{k} classes")
    numerics = f"{device} {config.precision}"
    if config.precision != config.eval_precision:
        numerics += f" (eval {config.eval_precision})"
    numerics += "".join(f" +{flag}" for flag, on in (("compile", config.compile),
                                                      ("channels_last", config.channels_last))
                        if on)
    if world_size > 1:
        numerics += f" x {world_size} processes"
    batch = f"batch {batch_size}" + (f" ({config.grad_accum} micro-batches)"
                                     if config.grad_accum > 1 else "")
    epochs = total_steps / max(steps_per_epoch, 1)
    length = (f"{total_steps:,} step{'s' if total_steps != 1 else ''} ({epochs:.3g} "
              f"epoch{'s' if epochs != 1 else ''})")
    if step:
        length = f"steps {step:,} -> {length}"
    parts = [f"{model.family} ({', '.join(model_bits)}), {params:,} parameters", numerics,
             _data_text(data, shape, n_train, n_test), batch, length]
    if out:
        parts.append(out)
    return ("resume: " if step else "train: ") + " | ".join(parts)


def smallest_preset(model: TractableModel, shape: Sequence[int]) -> tuple[str, int] | None:
    """(name, parameters) of the family's smallest preset for this data, if any."""
    from tractable.training.factory import build_model, model_config_for, presets_of

    cfg = model.config
    best: tuple[str, int] | None = None
    for name in presets_of(type(model)):
        try:
            preset_cfg = model_config_for(model.family, shape, cfg.num_classes,
                                          list(cfg.class_names), preset=name)
            with torch.device("meta"):  # counts parameters without allocating them
                n = parameter_count(build_model(model.family, preset_cfg))
        except Exception:  # a preset that does not fit this data: not a suggestion
            continue
        if best is None or n < best[1]:
            best = (name, n)
    return best


def size_warning(model: TractableModel, params: int, device: torch.device,
                 shape: Sequence[int], n_train: int) -> str | None:
    """A warning when the model is far too large for the device or for `n_train` images of
    `shape` (C, H, W), else None."""
    c, h, w = shape
    subpixels = n_train * c * h * w
    reasons = []
    if device.type == "cpu" and params > CPU_PARAMETER_LIMIT:
        reasons.append("a CPU")
    if params > max(subpixels, DATA_PARAMETER_FLOOR):
        reasons.append(f"{n_train:,} training images of {c}x{h}x{w} "
                       f"({subpixels:,} sub-pixels)")
    if not reasons:
        return None
    text = (f"warning: this {params / 1e6:.1f}M-parameter {model.family} model is far too "
            f"large for {' and for '.join(reasons)}")
    small = smallest_preset(model, shape)
    if small is not None and small[1] < params:
        return text + f"; --preset {small[0]} has {small[1]:,} parameters"
    return text + "; choose a smaller model (fewer filters or layers)"


def duration_text(seconds: float) -> str:
    """`3 h 05 min`, `6 min 24 s`, `41 s`."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class EtaClock:
    """Says how long the rest of this session's training will take, from the trainer's own
    count of training seconds (`line`, called after each step).

    The first `warmup_steps` steps are not timed: they hold one-off costs (the compiler's
    warm-up, allocator and cache growth, a loaded machine settling) that once made a first
    estimate five times too long. The estimate is the median step time over a moving window
    of the last `window` timed steps (robust to a stray slow step), reported once the window
    is full or `ETA_AFTER_S` seconds of timed steps have passed (at least two steps), and
    again when it has moved by more than `ETA_CHANGE` after at least `ETA_UPDATE_S` more
    seconds of training. Evaluation and checkpoint time are not counted: the trainer's
    count holds the steps only.
    """

    def __init__(self, first_step: int, total_steps: int,
                 warmup_steps: int = ETA_WARMUP_STEPS, window: int = ETA_WINDOW) -> None:
        self.first_step, self.total, self.warmup = first_step, total_steps, warmup_steps
        self.times: deque[float] = deque(maxlen=window)
        self.timed_s = 0.0  # training time of the timed (post-warm-up) steps
        self.reported: tuple[float, float] | None = None  # (s/step, timed_s) when said
        self._last_step, self._last_train_s = first_step, 0.0

    def line(self, step: int, train_s: float) -> str | None:
        """After step `step` (1-based count of steps done), `train_s` seconds trained so far
        this session: the ETA line due now, or None. The time since the last call is split
        evenly over the steps since it."""
        steps = step - self._last_step
        dt = (train_s - self._last_train_s) / max(steps, 1)
        self._last_step, self._last_train_s = step, train_s
        return self._observe(step, dt) if steps >= 1 else None

    def _observe(self, step: int, dt: float) -> str | None:
        """Step `step` took `dt` seconds: the ETA line due now, or None."""
        n = step - self.first_step
        if n <= self.warmup:
            return None
        self.times.append(dt)
        self.timed_s += dt
        if step >= self.total:
            return None
        if self.reported is None:
            if len(self.times) < (self.times.maxlen or 1) and not (
                    self.timed_s >= ETA_AFTER_S and len(self.times) >= 2):
                return None
            per = statistics.median(self.times)
            prefix = "eta"
        else:
            last, at = self.reported
            if self.timed_s - at < ETA_UPDATE_S:
                return None
            per = statistics.median(self.times)
            if abs(per - last) <= ETA_CHANGE * last:
                return None
            prefix = "eta update"
        self.reported = (per, self.timed_s)
        left = self.total - step
        first_timed = self.first_step + self.warmup + 1
        steps = (f"step {step:,}" if len(self.times) == 1
                 else f"steps {max(first_timed, step - len(self.times) + 1):,}-{step:,}")
        return (f"{prefix}: {per:.3g} s/step (median of {steps}, after {self.warmup} "
                f"warm-up steps): about {duration_text(per * left)} for the remaining "
                f"{left:,} steps (evaluations not included)")
