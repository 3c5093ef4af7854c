"""Wall-clock timing for the benchmark: medians over repeats, with queued GPU work included."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from engine.metrics import synchronize


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1,
                device: str | torch.device = "cpu") -> float:
    """Median seconds of `repeats` calls of fn() after `warmup` untimed ones, each synchronised with `device`."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
