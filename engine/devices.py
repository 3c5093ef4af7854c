"""Where the work runs: the device choice, and the torchrun process group for distributed training.

`pick_device` is shared by training, sampling and the CLI; `init_distributed` and `replicas_identical` are
only for `python -m engine train` launched under torchrun (the dashboard stays single-process).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn


def pick_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, else cpu for "auto"; a requested device that is missing raises a clear error.

    Under torchrun, "auto" picks this process's GPU (LOCAL_RANK).
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available; use --device auto or cpu")
    if requested not in ("cpu", "cuda", "mps"):
        raise RuntimeError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    return torch.device(requested)


def init_distributed() -> tuple[int, int]:
    """(rank, world size): under torchrun (WORLD_SIZE > 1) joins the process group, once; else (0, 1).

    nccl when CUDA is available, gloo otherwise (CPU processes on one machine, as the tests run it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def replicas_identical(model: nn.Module) -> bool:
    """Under torchrun: do all ranks hold bit-identical weights? (True when not distributed).

    Compares three float64 fingerprints of the flattened weights (sum, sum of squares, max |w|) across ranks.
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return True
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * flat).sum(), flat.abs().max()]).to(next(model.parameters()).device)
    others = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(others, mine)
    return all(torch.equal(o, others[0]) for o in others)
