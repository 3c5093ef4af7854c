"""Speed-ups that keep the maths: the denoiser run through torch.compile, with a plain fallback.

For sampling, `compile_denoiser` (below); for training, `compile_for_training` (`python -m engine train
--compile`), which compiles the forward and backward graphs up front.

torch.compile (TorchInductor) turns the U-Net's many small element-wise steps (GroupNorm, SiLU, the FiLM scale
and shift, the residual adds) into a few fused C++ loops, so a guided sampling step does the same arithmetic
with fewer passes over memory. It costs a one-off compile (tens of
seconds on a laptop CPU, cached on disk by torch afterwards), one more per new batch size, and needs a C++
compiler on CPU, so it is opt-in where batches have few fixed sizes: `python -m engine evaluate --compile`,
`sample --compile`, and `python -m engine bench` (measured beside eager). The dashboard samples eagerly: its
batch sizes vary with every page, and each new one would stall a learner for a compile. Where compiling
fails, the eager model runs and the reason is kept.

Measured on the project's 2-core CPU, 100 guided DDIM-25 digits: compiled with the batch size as a constant,
1.27x faster than eager on one thread (8.5 vs 10.8 s) and 1.11x on two (3.9 vs 4.4 s, `python -m engine bench`);
the convolutions, which oneDNN already runs well, dominate what is left. A batch-size-generic (dynamic) compile
took minutes and gave ~1.1x on one thread, so each batch size is compiled on its own.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class CompiledDenoiser(nn.Module):
    """Wraps a denoiser: forward runs the torch.compile'd graph, or the eager model if compiling failed.

    Exposes the wrapped model's `cfg` and parameters, so every sampler accepts it in place of the model. Each
    batch size gets its own compiled graph; the `capture` argument (feature maps) always runs eagerly. Meant for
    one caller at a time (the CLI and the bench), not for the dashboard's concurrent sessions.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model.eval()
        self.cfg = getattr(model, "cfg", None)
        self.error: str | None = None
        try:
            self._compiled = torch.compile(model, dynamic=False)
        except Exception as e:  # torch without a working dynamo (unsupported Python, ...)
            self._compiled = None
            self.error = f"{type(e).__name__}: {e}"

    @property
    def active(self) -> bool:
        """Whether calls currently go through the compiled graph."""
        return self._compiled is not None

    def forward(self, x, t, y=None, style=None, capture=None):
        if capture is not None or self._compiled is None or torch.is_grad_enabled():
            return self.inner(x, t, y, style, capture)
        try:
            return self._compiled(x, t, y, style)
        except Exception as e:  # no C++ compiler, unsupported op, ...: fall back for good, keep the reason
            self.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self._compiled = None
            return self.inner(x, t, y, style, capture)


def compile_denoiser(model: nn.Module) -> CompiledDenoiser:
    """The model wrapped for compiled inference (see CompiledDenoiser); compiling happens at the first call."""
    return CompiledDenoiser(model)


def warm_up(model: nn.Module, batch_sizes: tuple[int, ...] = (100, 200)) -> float:
    """One forward per batch size, so compiling happens now rather than inside a timed or watched run.

    Sampling B digits uses batch 2B at guided steps and B at unguided ones (a limited guidance interval).
    Returns the seconds it took. Inputs: zeros at t = 500 with the null class.
    """
    import time

    cfg = model.cfg
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batch_sizes:
            x = torch.zeros(b, cfg.in_channels, cfg.image_size, cfg.image_size,
                            device=next(model.parameters()).device)
            t = torch.full((b,), 500, dtype=torch.long, device=x.device)
            y = torch.full((b,), cfg.null_class, dtype=torch.long, device=x.device)
            model(x, t, y)
    return time.perf_counter() - t0


def compile_for_training(model: nn.Module, batch_size: int) -> tuple[nn.Module, float, str | None]:
    """The model through torch.compile for training steps of `batch_size` images, compiled now.

    Returns (module to train, seconds spent, error). The module shares the model's parameters, so the
    optimiser, the EMA and checkpoints keep using the plain model. One forward and backward pass on random
    inputs compiles both graphs up front, so a failure (no C++ compiler, an unsupported op) shows here, before
    any real step: then the plain model comes back with the reason, and training runs eagerly. The warm-up's
    gradients are discarded; no parameter changes.

    Measured on the project's 2-core CPU (default model, batch 128, channels-last): 286 vs 262 images/s eager,
    after a ~35 s compile, so it pays off for runs longer than a few minutes (`python -m engine train
    --compile`). The dashboard trains eagerly: a learner would wait for the compile before the first step.
    """
    import time

    cfg = model.cfg
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(model, dynamic=False)
        device = next(model.parameters()).device
        was_training = model.training
        model.train()
        x = torch.randn(batch_size, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
        t = torch.randint(0, 1000, (batch_size,), device=device)
        y = torch.randint(0, cfg.null_class + 1, (batch_size,), device=device)
        style = torch.randn(batch_size, cfg.style_dim, device=device) if cfg.style_dim else None
        compiled(x, t, y, style).square().mean().backward()
        model.train(was_training)
        return compiled, time.perf_counter() - t0, None
    except Exception as e:  # fall back to eager training, keep the reason
        return model, time.perf_counter() - t0, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        for p in model.parameters():
            p.grad = None
