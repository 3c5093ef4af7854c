"""The Geometry lab's figure: how long a learner waits for a good fit of two moons, trained from scratch."""
from __future__ import annotations

import time

import torch

from engine import geometry as geo


def time_to_fit_two_moons(objective: str = "ddpm", steps: int | None = None, threads: int | None = 1,
                          sampler: str | None = None, n_steps: int = 50, log=print) -> dict:
    """Train the page's default model on the page's two-moons data from scratch and measure the fit, as the page does.

    threads: torch threads while training (1: as the dashboard's script threads run it; None: leave as set).
    steps: training steps (default: GeometryConfig's, the page's default). sampler: default the page's default for
    the objective (geo.SAMPLERS[objective][0]), at n_steps. Returns {"objective", "steps", "seconds" (training
    only), "threads", "distance", "floor", "ratio", "good", "untrained_ratio", "sampler", "n_steps",
    "sample_seconds"}.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cfg = geo.GeometryConfig(objective=objective, **({} if steps is None else {"steps": steps}))
        train, held, fresh = (geo.make_dataset("moons", n, seed) for n, seed in ((4000, 0), (1000, 1), (1000, 2)))
        t0 = time.perf_counter()
        result = geo.train(cfg, train)
        seconds = time.perf_counter() - t0
        sampler = sampler or geo.SAMPLERS[objective][0]
        noise, ref = geo.start_noise(1000, 0), geo.FitReference(held.x, fresh.x)
        t0 = time.perf_counter()
        samples = geo.sample(result.model, noise, n_steps, sampler, generator=torch.Generator().manual_seed(1))[-1]
        sample_seconds = time.perf_counter() - t0
        fit = ref.report(samples)
        untrained = geo.GeometryModel(cfg, 0, result.model.clip)
        before = ref.report(geo.sample(untrained, noise, n_steps, sampler,
                                       generator=torch.Generator().manual_seed(1))[-1])
    finally:
        torch.set_num_threads(previous)
    out = {"objective": objective, "steps": cfg.steps, "seconds": round(seconds, 2), "threads": threads,
           "distance": round(fit["distance"], 4), "floor": round(fit["floor"], 4), "ratio": round(fit["ratio"], 3),
           "good": fit["good"], "untrained_ratio": round(before["ratio"], 2), "sampler": sampler, "n_steps": n_steps,
           "sample_seconds": round(sample_seconds, 3)}
    log(f"geometry lab, two moons, {objective}: {cfg.steps} steps in {seconds:.2f} s ({threads} thread(s)); "
        f"{sampler}-{n_steps} samples at {fit['ratio']:.2f}x a fresh draw's distance (good fit <= {geo.GOOD_FIT:g}x; "
        f"untrained {before['ratio']:.1f}x)")
    return out


if __name__ == "__main__":                      # python -m benchmarks.geometry
    for obj in geo.OBJECTIVES:
        time_to_fit_two_moons(obj)
