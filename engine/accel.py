"""Speed tricks that keep the maths and the state dict, swapped into the textbook model of unet.py.

unet.py is the network as a learner reads it. What runs (loaded checkpoints, training, the bench) is the same
network through `to_device`, which calls `speed_up` and chooses the memory layout:

- `UpConv`: each nearest x2 upsample + 3x3 conv computed as four 2x2 convs at the low resolution (sub-pixel
  convolution), without making the 4x larger upsampled image. Same parameters, same state dict keys.
- channels-last (NHWC) on a CPU, where oneDNN's convolutions run faster on it; `ChannelsLastSelfAttention` and
  UpConv keep that layout, so activations never flip between layouts.
- torch.compile, opt-in: `compile_denoiser` for sampling, `compile_for_training` for training.

Every swap keeps the parameters (the very same tensors) and the state dict keys, so a checkpoint saved from
either form loads into the other and gives the same outputs up to float rounding (tests/test_accel.py).

torch.compile (TorchInductor) turns the U-Net's many small element-wise steps (GroupNorm, SiLU, the FiLM scale
and shift, the residual adds) into a few fused C++ loops, so a guided sampling step does the same arithmetic
with fewer passes over memory. It costs a one-off compile (tens of
seconds on a laptop CPU, cached on disk by torch afterwards), one more per new batch size, and needs a C++
compiler on CPU, so it is opt-in where batches have few fixed sizes: `python -m engine evaluate --compile`,
`sample --compile`, and the benchmark (measured beside eager). The dashboard samples eagerly: its
batch sizes vary with every page, and each new one would stall a learner for a compile. Where compiling
fails, the eager model runs and the reason is kept.

Measured on the project's 2-core CPU, 100 guided DDIM-25 digits: compiled with the batch size as a constant,
1.27x faster than eager on one thread (8.5 vs 10.8 s) and 1.11x on two (3.9 vs 4.4 s, `python -m engine bench`);
the convolutions, which oneDNN already runs well, dominate what is left. A batch-size-generic (dynamic) compile
took minutes and gave ~1.1x on one thread, so each batch size is compiled on its own.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet import SelfAttention


def _is_nhwc(x: torch.Tensor) -> bool:
    """True for a channels-last feature map with more than one channel (where the two layouts differ)."""
    return x.shape[1] > 1 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _fold_taps(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Along one spatial axis of a 3-tap kernel, the two 2-tap kernels that act on the un-upsampled input.

    After a nearest x2 upsample, output row 2i sees input rows (i-1, i, i) and row 2i+1 sees (i, i, i+1); the
    taps that land on the same input row add up. Returns (2, ...) with phase 0 = (w0, w1+w2), 1 = (w0+w1, w2).
    """
    w0, w1, w2 = w.unbind(dim)
    return torch.stack([torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim)])


class UpConv(nn.Sequential):
    """Nearest x2 upsample followed by a 3x3 conv, computed without making the upsampled image.

    Mathematically identical to unet.upsample's nn.Sequential(nn.Upsample(2, "nearest"), conv), and built from
    that conv (the same parameter tensors, the same state_dict keys "1.weight", "1.bias"), but each of the 4
    output phases is a 2x2 conv at the low resolution: 16 multiply-adds per output pixel instead of 36, and no
    4x-larger input buffer ("sub-pixel" convolution, Shi et al. 2016). Measured on the project's CPU: the 14->28
    up-conv of a batch of 200 runs ~2x faster.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) \
                or conv.dilation != (1, 1) or conv.groups != 1 or conv.bias is None:
            raise ValueError(f"UpConv replaces a 3x3, stride-1, padding-1 conv with a bias; got {conv}")
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        B, _, H, W = x.shape
        O = conv.out_channels
        k = _fold_taps(_fold_taps(conv.weight, 3), 3)                      # (2 row phase, 2 col phase, O, I, 2, 2)
        k = k.flatten(0, 2)                                                # (4 O, I, 2, 2), grouped by phase
        out = F.conv2d(F.pad(x, (1, 1, 1, 1)), k, conv.bias.repeat(4))     # (B, 4 O, H + 1, W + 1)
        # phase (a, b) is output pixel (2i + a, 2j + b); its window starts a rows / b columns further in
        if _is_nhwc(out):   # keep the channels-last layout: interleave (B, H, 2, W, 2, O) in memory
            out = out.permute(0, 2, 3, 1).reshape(B, H + 1, W + 1, 2, 2, O)
            rows = [torch.stack([out[:, a:a + H, b:b + W, a, b] for b in (0, 1)], 3) for a in (0, 1)]
            return torch.stack(rows, 2).reshape(B, 2 * H, 2 * W, O).permute(0, 3, 1, 2)
        out = out.reshape(B, 2, 2, O, H + 1, W + 1)
        rows = [torch.stack([out[:, a, b, :, a:a + H, b:b + W] for b in (0, 1)], -1) for a in (0, 1)]
        return torch.stack(rows, 3).reshape(B, O, 2 * H, 2 * W)            # (B, O, 2H, 2W)


class ChannelsLastSelfAttention(SelfAttention):
    """unet.SelfAttention that keeps a channels-last input channels-last (the textbook reshape would copy it
    into NCHW, and every layer after it would flip back). The same layers: built from a SelfAttention, it adopts
    its norm, qkv and proj modules, so parameters and state_dict keys are unchanged."""

    def __init__(self, attn: SelfAttention) -> None:
        nn.Module.__init__(self)              # adopt attn's layers rather than make new ones
        self.num_heads = attn.num_heads
        self.norm, self.qkv, self.proj = attn.norm, attn.qkv, attn.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        nh = self.num_heads
        qkv = self.qkv(self.norm(x))                                       # (B, 3C, H, W)
        if _is_nhwc(qkv):   # in memory the tokens are already rows of 3C values: views, not copies
            qkv = qkv.permute(0, 2, 3, 1).reshape(B, H * W, 3, nh, C // nh)  # (B, HW, 3, nh, hs)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                 # each (B, nh, HW, hs)
            h = F.scaled_dot_product_attention(q, k, v)                    # (B, nh, HW, hs)
            h = h.transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last
        else:               # NCHW: the textbook path of unet.SelfAttention
            qkv = qkv.reshape(B, 3, nh, C // nh, H * W)                    # (B, 3, nh, hs, HW)
            q, k, v = qkv.permute(1, 0, 2, 4, 3).unbind(0)                 # each (B, nh, HW, hs)
            h = F.scaled_dot_product_attention(q, k, v)                    # (B, nh, HW, hs)
            h = h.permute(0, 1, 3, 2).reshape(B, C, H, W)
        return x + self.proj(h)


def _is_upsample_conv(m: nn.Module) -> bool:
    """nn.Sequential(nearest x2 upsample, conv): the textbook up-convolution of unet.upsample."""
    return (type(m) is nn.Sequential and len(m) == 2 and isinstance(m[0], nn.Upsample)
            and m[0].mode == "nearest" and m[0].size is None and m[0].scale_factor in (2, 2.0, (2.0, 2.0))
            and isinstance(m[1], nn.Conv2d))


def _textbook_parts(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, name, module) of every module speed_up replaces."""
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if _is_upsample_conv(child) or type(child) is SelfAttention]


def speed_up(model: nn.Module) -> nn.Module:
    """Swap the fast forms into `model` in place and return it: every nearest-x2-upsample + conv becomes an
    UpConv and every SelfAttention a ChannelsLastSelfAttention, around the same parameter tensors.

    The state dict (keys, shapes, values) is unchanged and the outputs equal the textbook model's up to float
    rounding. Idempotent. Modules that do not match (e.g. a PlainCNN has none) are left as they are.
    """
    for parent, name, child in _textbook_parts(model):
        fast = UpConv(child[1]) if isinstance(child, nn.Sequential) else ChannelsLastSelfAttention(child)
        setattr(parent, name, fast)
    return model


def fast_form(model: nn.Module) -> nn.Module:
    """`model` as it runs: itself when already in its fast form (or nothing applies), else a sped-up deep copy,
    leaving the given model as it was. For describing a model (FLOPs, block kinds) without changing it."""
    if not _textbook_parts(model):
        return model
    return speed_up(copy.deepcopy(model))


def to_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """The model in its fast form (speed_up) on `device`, channels-last on a CPU; returns the model (in place).

    On a CPU that is channels-last (NHWC): oneDNN's convolutions run faster on it, and every layer above keeps
    the layout, so activations never flip between layouts. The numbers are the same, only the memory order
    differs. Measured on the project's 2-core CPU: a training step of the default model 1.08x faster, and a
    guided DDIM-25 of 100 digits 1.15x. Elsewhere the model stays NCHW: channels-last has not been measured on
    a GPU for this project.
    """
    speed_up(model)
    model.to(device)
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


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
