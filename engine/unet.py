"""The conditional denoiser: a small U-Net for 28x28 digits, plus a plain CNN for the ablation.

eps_pred = model(x_t, t, y, style)  predicts the noise that was added to x_0 to make x_t.

    x_t   (B, C, H, W)  noisy images in the engine's range
    t     (B,)          int64 timesteps in [0, T)
    y     (B,)          int64 class labels 0..9, or 10 = the null class ("no label", for guidance);
          (B, 11)       or float weights over the 11 class embeddings (a mix, for interpolation)
    style (B, S)        optional continuous style values; a row of NaN means "no style" (null)

Design (Ho et al. 2020 / Dhariwal & Nichol 2021, sized for a CPU laptop):
    stem conv -> [ResBlocks -> downsample (stride-2 conv)] per level -> ResBlock, self-attention, ResBlock at 7x7
    -> [concat skip -> ResBlocks -> upsample (nearest x2, 3x3 conv)] per level -> GroupNorm, SiLU, conv
    (zero-initialised).
With patch_size 2 the stem first folds each 2x2 patch of pixels into 4 channels (pixel-unshuffle), so the levels
start at 14x14, and the head's 4 output channels are unfolded back into 2x2 pixels (pixel-shuffle): the same
network minus its 28x28 level, where most of the FLOPs were (Hoogeboom et al. 2023, "simple diffusion").
The time step enters every residual block through an embedding (sinusoidal features + MLP) that is added to
the class and style embeddings and applied as a per-channel scale and shift (FiLM, "adaptive GroupNorm").
The class embedding has num_classes + 1 rows: the last is the null class, the "no label" of classifier-free
guidance. The ablation switches (skip_connections, time_embedding, class_embedding, arch="cnn") remove a part.

This is the textbook form. What runs is the same network with the same weights and state dict, made faster by
engine/accel.py (`accel.to_device`): a sub-pixel form of each upsample + conv and the channels-last memory
layout. Nothing here depends on it.

Apart from torch this file imports nothing at run time (nanoGPT's habit): `cfg` is engine/config.py's
ModelConfig, named for type checkers only, so a learner can read (and run) the model alone.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from .config import ModelConfig


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style position features of the timestep (Vaswani et al. 2017, sec. 3.5).

    t: (B,) ints or floats -> (B, dim) with cos in the first half and sin in the second.
    Low frequencies change slowly with t, high ones quickly, so every t gets a distinct, smooth code.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]                          # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)          # (B, dim)


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, FiLM by the conditioning embedding, GroupNorm -> SiLU -> conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None   # per-channel scale and shift
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)          # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                            # (B, c_out, H, W)
        h = self.norm2(h)
        if self.emb is not None and emb is not None:
            scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)   # (B, c_out, 1, 1) each
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a small feature map (7x7 = 49 tokens), plus a skip."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"self-attention over {channels} channels cannot be split into {num_heads} heads: "
                             f"num_heads must divide the channels of the lowest level (here {channels})")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        nh = self.num_heads
        qkv = self.qkv(self.norm(x))                                       # (B, 3C, H, W)
        qkv = qkv.reshape(B, 3, nh, C // nh, H * W)                        # (B, 3, nh, hs, HW)
        q, k, v = qkv.permute(1, 0, 2, 4, 3).unbind(0)                     # each (B, nh, HW, hs)
        h = F.scaled_dot_product_attention(q, k, v)                        # softmax(q k^T / sqrt(hs)) v
        h = h.permute(0, 1, 3, 2).reshape(B, C, H, W)                      # (B, nh, hs, HW) -> (B, C, H, W)
        return x + self.proj(h)


def upsample(c_in: int, c_out: int) -> nn.Sequential:
    """Nearest-neighbour x2 upsample, then a 3x3 conv (the checkerboard-free choice of Odena et al. 2016)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1))


class Conditioning(nn.Module):
    """Builds the per-image conditioning vector from t, the class label and the style values."""

    def __init__(self, cfg: ModelConfig, emb_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.time_mlp = (nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                         if cfg.time_embedding else None)
        # num_classes + 1 rows: the last one is the null class used when the label is dropped.
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.class_embedding else None
        if cfg.style_dim:
            self.style_mlp = nn.Sequential(nn.Linear(cfg.style_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            self.style_null = nn.Parameter(torch.zeros(emb_dim))
        else:
            self.style_mlp = None

    def forward(self, t: torch.Tensor, y: torch.Tensor | None, style: torch.Tensor | None,
                batch: int, device: torch.device) -> torch.Tensor | None:
        emb = None
        if self.time_mlp is not None:
            emb = self.time_mlp(sinusoidal_embedding(t, self.cfg.base_channels))        # (B, E)
        if self.class_emb is not None:
            if y is None:
                y = torch.full((batch,), self.cfg.null_class, dtype=torch.long, device=device)
            if y.dim() == 2:
                # soft labels (B, num_classes + 1): a weighted mix of class embeddings (interpolation)
                c = y.to(self.class_emb.weight.dtype) @ self.class_emb.weight            # (B, E)
            else:
                c = self.class_emb(y)                                                   # (B, E)
            emb = c if emb is None else emb + c
        if self.style_mlp is not None:
            if style is None:
                s = self.style_null.expand(batch, -1)
            else:
                null = torch.isnan(style).any(dim=1, keepdim=True)                      # (B, 1)
                s = torch.where(null, self.style_null.expand(batch, -1), self.style_mlp(torch.nan_to_num(style)))
            emb = s if emb is None else emb + s
        return emb


class UNet(nn.Module):
    """Conditional U-Net; `capture`, when given a dict, receives each level's output feature map by name."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "unet":
            raise ValueError(f"UNet needs arch='unet', got {cfg.arch!r}; use build_model()")
        self.cfg = cfg
        ch = [cfg.base_channels * m for m in cfg.channel_mults]                # e.g. [32, 64, 64]
        if cfg.attention and ch[-1] % cfg.num_heads:
            raise ValueError(f"num_heads={cfg.num_heads} must divide the {ch[-1]} channels of the lowest level, where "
                             f"self-attention runs (base_channels {cfg.base_channels} x channel_mults[-1] "
                             f"{cfg.channel_mults[-1]}); pick a head count that divides {ch[-1]}")
        emb_dim = 4 * cfg.base_channels
        uses_emb = cfg.time_embedding or cfg.class_embedding or cfg.style_dim > 0
        self.cond = Conditioning(cfg, emb_dim)
        e = emb_dim if uses_emb else 0
        p = cfg.patch_size
        self.stem = nn.Conv2d(cfg.in_channels * p * p, ch[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = ch[0]
        for i, c in enumerate(ch):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c_prev, c, e, cfg.dropout))
                c_prev = c
            self.down.append(blocks)
            last = i == len(ch) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))

        self.mid1 = ResBlock(c_prev, c_prev, e, cfg.dropout)
        self.mid_attn = SelfAttention(c_prev, cfg.num_heads) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(c_prev, c_prev, e, cfg.dropout)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c = ch[i]
            blocks = nn.ModuleList()
            for j in range(cfg.num_res_blocks):
                c_in = c_prev + (c if (j == 0 and cfg.skip_connections) else 0)
                blocks.append(ResBlock(c_in, c, e, cfg.dropout))
                c_prev = c
            self.up.append(blocks)
            first = i == 0
            self.upsample.append(nn.Identity() if first else upsample(c, ch[i - 1]))
            if not first:
                c_prev = ch[i - 1]

        self.head = nn.Sequential(nn.GroupNorm(_groups(c_prev), c_prev), nn.SiLU(),
                                  nn.Conv2d(c_prev, cfg.in_channels * p * p, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                style: torch.Tensor | None = None, capture: dict | None = None) -> torch.Tensor:
        B = x.shape[0]
        emb = self.cond(t, y, style, B, x.device)                              # (B, E) or None
        p = self.cfg.patch_size
        if p > 1:
            x = F.pixel_unshuffle(x, p)                                         # (B, C*p*p, 28/p, 28/p)
        h = self.stem(x)                                                        # (B, ch0, 28/p, 28/p)
        skips = []
        for i, (blocks, down) in enumerate(zip(self.down, self.downsample)):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)                                                     # (B, ch_i, 28/2^i, 28/2^i)
            if capture is not None:
                capture[f"down{i} ({h.shape[-1]}x{h.shape[-1]})"] = h.detach()
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)                     # (B, ch_last, 7, 7)
        if capture is not None:
            capture[f"middle ({h.shape[-1]}x{h.shape[-1]})"] = h.detach()
        for k, (blocks, up) in enumerate(zip(self.up, self.upsample)):
            skip = skips[len(skips) - 1 - k]
            for j, block in enumerate(blocks):
                if j == 0 and self.cfg.skip_connections:
                    h = torch.cat([h, skip], dim=1)                             # (B, c + c_skip, H, W)
                h = block(h, emb)
            if capture is not None:
                capture[f"up{len(skips) - 1 - k} ({h.shape[-1]}x{h.shape[-1]})"] = h.detach()
            h = up(h)
        out = self.head(h)                                                      # (B, C*p*p, 28/p, 28/p)
        return F.pixel_shuffle(out, p) if p > 1 else out                        # (B, C, 28, 28)


class PlainCNN(nn.Module):
    """Ablation: the same residual blocks and conditioning, but every block at full 28x28 resolution.

    No downsampling means no global view: a pixel only sees a window of 2 * (#convs) + 1 pixels.
    Block count is chosen so its FLOPs per image are close to the U-Net of the same width.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.base_channels
        emb_dim = 4 * c
        uses_emb = cfg.time_embedding or cfg.class_embedding or cfg.style_dim > 0
        self.cond = Conditioning(cfg, emb_dim)
        self.stem = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        n_blocks = 2 * len(cfg.channel_mults) * cfg.num_res_blocks + 2
        self.blocks = nn.ModuleList([ResBlock(c, c, emb_dim if uses_emb else 0, cfg.dropout) for _ in range(n_blocks)])
        self.head = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, cfg.in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                style: torch.Tensor | None = None, capture: dict | None = None) -> torch.Tensor:
        emb = self.cond(t, y, style, x.shape[0], x.device)
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            h = block(h, emb)
            if capture is not None and (i % 2 == 1 or i == len(self.blocks) - 1):
                capture[f"block{i} (28x28)"] = h.detach()
        return self.head(h)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The denoiser described by `cfg` (U-Net or plain CNN), freshly initialised."""
    return UNet(cfg) if cfg.arch == "unet" else PlainCNN(cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights and biases) of `model`."""
    return sum(p.numel() for p in model.parameters())
