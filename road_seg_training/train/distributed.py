"""Process group and device of one training process (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK).

The same code runs single-process and under `torchrun`: with WORLD_SIZE unset
or 1 nothing is initialised and every helper here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from road_seg_core.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_kind: str) -> DistInfo:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU); a plain DistInfo when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return info


def device_kind(name: str) -> str:
    """"cuda" or "cpu" for a config's device name ("auto" picks CUDA when there is one)."""
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """The torch device of this process: its LOCAL_RANK's GPU, or the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if device_kind(name) == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def all_reduce_counts(matrix: np.ndarray, info: DistInfo, device: torch.device) -> np.ndarray:
    """Sum an integer count array over all ranks (validation confusion matrices); identity when single-process."""
    if not info.enabled:
        return matrix
    t = torch.as_tensor(matrix, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().numpy().astype(np.int64)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
