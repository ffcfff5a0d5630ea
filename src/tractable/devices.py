"""Where a model runs and in which float type: one rule for the library, every command, the
app and the trainer.

    pick_device("auto")      this rank's GPU if there is one, else the CPU
    pick_device("cuda:1")    that GPU (an error naming the problem if there is none)
    pick_dtype("float64")    torch.float64 (None stays None: the weights' own type)
"""

from __future__ import annotations

import torch

from tractable.errors import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "fp64": torch.float64, "bf16": torch.bfloat16}


def pick_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> this rank's GPU if there is one, else the CPU; None -> the CPU;
    "cpu", "cuda", "cuda:N" or a `torch.device` -> that device, checked to exist."""
    if isinstance(name, torch.device):
        name = str(name)
    if name is None:
        return torch.device("cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A float type by name ("float32", "float64", "bfloat16") or as given; None: keep."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return DTYPES[dtype]
