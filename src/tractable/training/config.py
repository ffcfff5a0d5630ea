"""Training settings: `TrainConfig`, saved in a run's `run.json` and in every checkpoint.

Every field is declared with `tractable.config.setting` (help text, range, command-line
group, metavar): `validate` checks every value against it, and `tractable train` makes the
field's flag from it (`tractable.cli.common.add_dataclass_flags`), so a new field needs no
command-line code. The optimizer fields are not listed
here: they are the fields of `tractable.config.TrainingDefaults`, each as `X | None = None`
(None: the model family's paper value), so a new optimizer setting is declared once.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tractable.config import JsonConfig, TrainingDefaults, setting
from tractable.errors import ConfigError
from tractable.limits import MAX_BATCH, MAX_DATASET_IMAGES, MAX_IMAGES, MAX_SEED, MAX_STEPS

# Optimizer fields that default to the model family's paper settings when left None.
OPTIMIZER_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingDefaults))

# Fields a resumed run may change: how long to train and how it reports, and the three
# settings that rescue a run that diverged (learning rate, warm-up, gradient clipping). A
# change of the latter is recorded in the run's history (a "resume" row).
RESCUE_FIELDS = ("lr", "warmup_steps", "grad_clip")
RESUMABLE_FIELDS = ("epochs", "max_steps", "log_every", "checkpoint_every", "eval_every",
                    "samples_per_eval", "progress", "quiet", "tensorboard", "device",
                    "max_bad_steps", *RESCUE_FIELDS)

_DEFAULTS_HINTS = typing.get_type_hints(TrainingDefaults)


def _optional(hint: Any) -> Any:
    return hint if type(None) in typing.get_args(hint) else hint | None


def _family_default(text: str) -> str:
    return text if "default" in text else f"{text} (default: the family's)"


_OptimizerOverrides = dataclasses.make_dataclass(
    "OptimizerOverrides",
    [(f.name, _optional(_DEFAULTS_HINTS[f.name]),
      field(default=None, metadata={**f.metadata, "group": "optimizer",
                                    "help": _family_default(f.metadata["help"])}))
     for f in dataclasses.fields(TrainingDefaults)],
    bases=(JsonConfig,),
)


@dataclass
class TrainConfig(_OptimizerOverrides):  # type: ignore[valid-type, misc]
    """How to train. Optimizer fields (those of `TrainingDefaults`) left None use the model
    family's paper defaults (`model.training_defaults()`)."""

    NAME_CLASS_IN_ERRORS: ClassVar[bool] = False  # "lr must be ...": it is --lr too

    data: str = setting("mnist-mini", "dataset name (see `tractable data list`)")
    data_options: dict[str, Any] = setting(
        default_factory=dict, help="load_dataset options (root, download, batches, size)")
    out: str | None = setting(None, "run folder; None: write nothing (API use, tests)")
    epochs: int | None = setting(None, "passes over the training images (default: 1, "
                                       "unless --max-steps)", minimum=1, maximum=MAX_STEPS,
                                 group="length", metavar="N")
    max_steps: int | None = setting(None, "optimizer steps; wins over --epochs (default: "
                                          "unset)", minimum=1, maximum=MAX_STEPS, group="length",
                                    metavar="STEPS")
    grad_accum: int = setting(1, "split each process's batch into K micro-batches (same "
                                 "global batch, less memory)", minimum=1, maximum=MAX_BATCH,
                            group="optimizer",
                            metavar="K")
    recipe: str | None = setting(None, "the `tractable.training.recipes` recipe these "
                                       "settings came from")
    # numerics
    precision: str = setting("fp32", "bf16 = autocast (the likelihood stays fp32)",
                             choices=("fp32", "bf16"), group="numerics")
    eval_precision: str = setting("fp32", "precision of the evaluations",
                                  choices=("fp32", "bf16"), group="numerics")
    compile: bool | None = setting(None, "torch.compile the loss, --no-compile: never "
                                         "(default: on for runs long enough to repay the "
                                         "warm-up, where the family says so)",
                                   group="numerics")
    channels_last: bool | None = setting(None, "NHWC memory format, --no-channels-last: "
                                         "contiguous NCHW (default: the model family's "
                                         "choice; on for PixelCNN++)", group="numerics")
    fused_optimizer: bool = setting(True, "Adam's plain per-operation update instead of the "
                                    "fused kernel (same algorithm, for comparison)",
                                    group="numerics", flag="--no-fused-optimizer")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", group="numerics")
    seed: int = setting(0, "seed of initialization, batches, subsets", minimum=-MAX_SEED,
                        maximum=MAX_SEED,
                        group="numerics")
    # data
    limit_train: int | None = setting(None, "train on a fixed random subset of N images "
                                      "(default: every image)",
                                      minimum=1, maximum=MAX_DATASET_IMAGES, group="data",
                                      metavar="N")
    limit_test: int | None = setting(None, "evaluate on a fixed random subset of N "
                                      "images (default: every image)",
                                     minimum=1, maximum=MAX_DATASET_IMAGES, group="data",
                                     metavar="N")
    init_batch_size: int | None = setting(None, "images for the data-dependent init (default: "
                                                "--batch-size)", minimum=1, maximum=MAX_BATCH,
                                          group="data",
                                          metavar="IMAGES")
    augment: str | None = setting(None, "comma-separated batch augmentations: flip, "
                                  "shift (default: none)",
                                  group="data")
    mutation_rate: float = setting(
        0.0, "replace sub-pixels at rate MU by uniform values: trains the background model "
             "for `tractable ood` (Ren et al. 2019; with --weight-decay)",
        minimum=0.0, maximum=1.0, group="data", metavar="MU")
    # reporting and safety
    log_every: int = setting(50, "steps between log lines", minimum=1, maximum=MAX_STEPS,
                             group="reporting",
                             metavar="STEPS")
    checkpoint_every: int = setting(1000, "steps between checkpoints", minimum=1,
                                    maximum=MAX_STEPS,
                                    group="reporting", metavar="STEPS")
    eval_every: int | None = setting(None, "steps between evals (default: each epoch)",
                                     minimum=1, maximum=MAX_STEPS, group="reporting",
                                     metavar="STEPS")
    eval_batch_size: int | None = setting(None, "batch of the evaluations (default: "
                                                "--batch-size)", minimum=1, maximum=MAX_BATCH,
                                          group="reporting", metavar="IMAGES")
    samples_per_eval: int = setting(16, "images in each evaluation's sample grid, "
                                        "0: none", minimum=0, maximum=MAX_IMAGES,
                                    group="reporting",
                                    metavar="N")
    sampler: str | None = setting(None, "sampler for the grids (default: the family's)",
                                  group="reporting")
    max_bad_steps: int = setting(20, "consecutive NaN/inf steps tolerated", minimum=1,
                                 maximum=MAX_STEPS,
                                 group="reporting", metavar="STEPS")
    tensorboard: bool = setting(False, "also log to TensorBoard", group="reporting")
    progress: bool = setting(True, "no progress bar (default: a bar on a "
                                   "terminal)", group="reporting",
                             flag="--no-progress")
    quiet: bool = setting(False, "print only the start-up line and the result",
                          group="reporting")

    def validate(self) -> None:
        """Raise `ConfigError` for a value out of its field's type or range (settings made
        in code or on the command line; `from_dict` checks JSON values the same way)."""
        super().validate()
        if self.out is not None and not str(self.out).strip():
            raise ConfigError("out (--out) is empty; name the run folder to write (None, in "
                              "the API: write nothing)")

    def optimizer_overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in OPTIMIZER_FIELDS}
