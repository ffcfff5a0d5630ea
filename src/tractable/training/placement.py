"""Where and in what form a model trains: its weights' memory format on the device, and
its loss wrapped for DistributedDataParallel and `torch.compile`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tractable.models.base import TractableModel
from tractable.training.distributed import DistEnv


class LossOf(nn.Module):
    """`forward = model.loss`, so DDP and torch.compile see the whole training objective."""

    def __init__(self, model: TractableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        return self.model.loss(x, y)


def wrap_loss(model: TractableModel, env: DistEnv, compiled: bool) -> tuple[nn.Module, Any]:
    """(the loss module a step calls, its DDP wrapper or None in one process)."""
    wrapped: nn.Module = LossOf(model)
    ddp: Any = None
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [env.device.index] if env.device.type == "cuda" else None
        # static_graph: parameters a family leaves unused (the same ones every step)
        # are found in the first step, with no per-step graph traversal afterwards.
        wrapped = ddp = DDP(wrapped, device_ids=ids, static_graph=True)
    if compiled:
        wrapped = torch.compile(wrapped)  # type: ignore[assignment]
    return wrapped, ddp


def to_channels_last(model: nn.Module) -> None:
    """NHWC weights for the convolutions, except 1×1 kernels: their NHWC and NCHW strides
    describe the same memory, and they keep the NCHW ones that the gradients of their
    matmul form come back with (DDP's buckets expect a gradient's strides to be its
    parameter's)."""
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4 and p.shape[2:] == (1, 1):
                p.data = p.data.clone(memory_format=torch.contiguous_format)
