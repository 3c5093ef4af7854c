"""The machine's reference figure: what a plain fp32 matmul reaches, to put the model's GFLOP/s in scale."""
from __future__ import annotations

import torch

from .timing import median_time


def matmul_gflops(n: int = 1024, repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """fp32 matmul GFLOP/s, the machine's reference (on a GPU: 4096², TF32 off, as torch's default)."""
    if torch.device(device).type == "cuda":
        n, repeats = 4096, 50
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    dt = median_time(lambda: a @ b, repeats, warmup=3, device=device)
    return 2 * n ** 3 / dt / 1e9
