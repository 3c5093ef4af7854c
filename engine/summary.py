"""Per-block summary of a denoiser for a given input: shapes, parameters and FLOPs.

Uses forward hooks on the model's named blocks and torch's own FlopCounterMode (no extra dependency), so the
Architecture page and `python -m engine summary` describe the model that is actually loaded.

Either form of the U-Net works: the textbook one of unet.py and the fast one of accel.py (what loaded checkpoints
and training run). They have the same blocks, shapes and parameters; the fast form's up-convolutions (UpConv)
cost fewer FLOPs, since the sub-pixel form adds up the taps that land on a repeated pixel before multiplying.
By default (as_run=True) a model is described as it runs: a textbook model is counted through a sped-up copy
(accel.fast_form), so every page, the runs table and the bench give one figure per architecture (212 MFLOP for
the default ModelConfig, where the textbook form would do 232). as_run=False describes exactly the modules given.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .accel import fast_form
from .unet import ResBlock, SelfAttention


@dataclass(frozen=True)
class BlockInfo:
    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    flops: int  # per image, forward


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks worth one row each: stem, every residual/attention block, down/up-samplers, head."""
    rows = []
    for name, mod in model.named_modules():
        if name in ("stem", "head") or isinstance(mod, (ResBlock, SelfAttention)):
            rows.append((name, mod))
        elif (name.startswith("downsample.") or name.startswith("upsample.")) and name.count(".") == 1 \
                and not isinstance(mod, nn.Identity):
            rows.append((name, mod))
    return rows


def _kind(mod: nn.Module) -> str:
    """The block's kind for the table: its class, with accel's channels-last attention shown as the layer it is."""
    return "SelfAttention" if isinstance(mod, SelfAttention) else type(mod).__name__


def model_summary(model: nn.Module, batch: int = 1, *, as_run: bool = True) -> list[BlockInfo]:
    """One BlockInfo per block, in execution order, for a (batch, C, H, W) input at t = 500, class 0.

    as_run: describe the model in the form it runs (see the module docstring); False: the modules as given.
    """
    if as_run:
        model = fast_form(model)
    cfg = model.cfg
    device = next(model.parameters()).device
    x = torch.zeros(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    records: dict[str, dict] = {}
    order: list[str] = []
    hooks = []
    flop_counter = FlopCounterMode(display=False)
    for name, mod in _blocks(model):
        def pre(m, args, name=name):
            records.setdefault(name, {})["in"] = tuple(args[0].shape)
            order.append(name)
        def post(m, args, out, name=name):
            records[name]["out"] = tuple(out.shape)
        hooks.append(mod.register_forward_pre_hook(pre))
        hooks.append(mod.register_forward_hook(post))
    try:
        with torch.no_grad(), flop_counter:
            model(x, t, y)
    finally:
        for h in hooks:
            h.remove()
    flops_by_module = flop_counter.get_flop_counts()
    named = dict(_blocks(model))
    out = []
    for name in order:
        mod = named[name]
        key = f"{type(model).__name__}.{name}"
        flops = sum(flops_by_module.get(key, {}).values())
        out.append(BlockInfo(name, _kind(mod),
                             records[name]["in"], records[name]["out"],
                             sum(p.numel() for p in mod.parameters()), int(flops // batch)))
    return out


def total_flops(model: nn.Module, *, as_run: bool = True) -> int:
    """Forward FLOPs per image (multiply-add = 2 FLOPs), all layers included; as_run as for model_summary."""
    if as_run:
        model = fast_form(model)
    cfg = model.cfg
    device = next(model.parameters()).device
    x = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, torch.zeros(1, dtype=torch.long, device=device), torch.zeros(1, dtype=torch.long, device=device))
    return int(counter.get_total_flops())


def format_summary(rows: list[BlockInfo]) -> str:
    lines = [f"{'block':<18} {'kind':<14} {'input':<18} {'output':<18} {'params':>9} {'MFLOP':>8}"]
    for r in rows:
        lines.append(f"{r.name:<18} {r.kind:<14} {str(r.in_shape):<18} {str(r.out_shape):<18} "
                     f"{r.params:>9,} {r.flops / 1e6:>8.1f}")
    lines.append(f"{'total (blocks)':<70} {sum(r.params for r in rows):>9,} {sum(r.flops for r in rows) / 1e6:>8.1f}")
    return "\n".join(lines)
