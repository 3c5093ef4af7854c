"""Frozen, validated configuration dataclasses.

Every constructor argument of a model, schedule or training run lives here, so a checkpoint can store it
as JSON and rebuild exactly what was trained (nanoGPT's habit). Validation raises `ConfigError` with the
offending value in the message; nothing is silently clamped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value a learner can fix: the message names the field, the value and the range."""


def _check_range(name: str, value: float, lo: float, hi: float, *, integer: bool = False) -> None:
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value != value or not (lo <= value <= hi):  # value != value catches NaN
        raise ConfigError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


class _Serialisable:
    """to_dict / from_dict with unknown keys reported, shared by every config class."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                v = data[f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class ModelConfig(_Serialisable):
    """The denoiser's architecture.

    arch: "unet" (the real model) or "cnn" (a plain same-resolution CNN denoiser, for the ablation).
    channel_mults: one entry per resolution level; 28x28 input gives levels 28, 14, 7 for three entries.
    patch_size: 1, or 2 for a pixel-unshuffle stem: each 2x2 patch of pixels becomes 4 channels of one position
        (Hoogeboom et al. 2023, "simple diffusion"), so the U-Net's levels start at 14x14 (14, 7 for two entries)
        and the head's 4 channels are shuffled back into 2x2 pixels. The full-resolution level is where most of
        a small U-Net's FLOPs go, so this is the cheap design for sampling on a CPU.
    skip_connections / time_embedding / class_embedding: switches for the ablations on the Architecture page.
    style_dim: number of continuous style inputs (0 = none; 2 = thickness and slant).
    """

    arch: str = "unet"
    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    patch_size: int = 1
    attention: bool = True  # self-attention at the lowest resolution only (7x7 = 49 tokens: cheap)
    num_heads: int = 4
    time_embedding: bool = True
    class_embedding: bool = True
    skip_connections: bool = True
    num_classes: int = 10
    style_dim: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ("unet", "cnn"))
        _check_range("in_channels", self.in_channels, 1, 4, integer=True)
        _check_range("image_size", self.image_size, 8, 64, integer=True)
        _check_range("base_channels (width)", self.base_channels, 4, 512, integer=True)
        if self.base_channels % 4:
            raise ConfigError(f"base_channels (width) must be a multiple of 4 (GroupNorm groups), got {self.base_channels}")
        if not isinstance(self.channel_mults, tuple) or not (1 <= len(self.channel_mults) <= 4):
            raise ConfigError(f"channel_mults must have 1 to 4 entries, got {self.channel_mults!r}")
        for m in self.channel_mults:
            _check_range("each channel multiplier", m, 1, 16, integer=True)
        _check_range("patch_size", self.patch_size, 1, 2, integer=True)
        if self.arch != "unet" and self.patch_size != 1:
            raise ConfigError("patch_size 2 (a pixel-unshuffle stem) is for arch='unet' only")
        downs = len(self.channel_mults) - 1
        if self.arch == "unet" and self.image_size % (self.patch_size * 2 ** downs):
            patches = f"split into {self.patch_size}x{self.patch_size} patches and " if self.patch_size > 1 else ""
            raise ConfigError(
                f"image_size {self.image_size} cannot be {patches}halved {downs} times; use fewer channel_mults")
        _check_range("num_res_blocks (depth)", self.num_res_blocks, 1, 8, integer=True)
        _check_range("num_heads", self.num_heads, 1, 16, integer=True)
        _check_range("num_classes", self.num_classes, 1, 1000, integer=True)
        _check_range("style_dim", self.style_dim, 0, 8, integer=True)
        _check_range("dropout", self.dropout, 0.0, 0.9)
        widest = self.base_channels * max(self.channel_mults)
        if widest > 1024:
            raise ConfigError(f"widest level would have {widest} channels; at most 1024 fit a laptop")

    @property
    def null_class(self) -> int:
        """Index of the 'no class' embedding used for classifier-free guidance (10 for digits)."""
        return self.num_classes


@dataclass(frozen=True)
class ScheduleConfig(_Serialisable):
    """The forward-process noise schedule.

    kind: "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021, diffusers' squaredcos_cap_v2), both with a
    noise-predicting network, or "flow": flow matching's linear path with a velocity-predicting network
    (`train --objective flow`; schedule.py says how it fits the same maths).
    T: number of diffusion steps; timesteps are indexed t = 0 .. T-1 as in diffusers.
    """

    kind: str = "cosine"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        _check_choice("schedule", self.kind, ("linear", "cosine", "flow"))
        _check_range("T (diffusion steps)", self.T, 1, 10000, integer=True)
        _check_range("beta_start", self.beta_start, 1e-8, 0.5)
        _check_range("beta_end", self.beta_end, 1e-8, 0.999)
        if self.beta_end < self.beta_start:
            raise ConfigError(f"beta_end ({self.beta_end}) must be >= beta_start ({self.beta_start})")


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
    """One training run. `steps` counts optimiser steps of `batch_size` images."""

    dataset: str = "mnist-5k"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # cosine decay to lr_min_ratio * lr after warm-up, or constant
    lr_min_ratio: float = 0.05
    p_uncond: float = 0.1  # label dropout to the null class, for classifier-free guidance
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    min_snr_gamma: float = 5.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = plain MSE
    augment: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 250
    log_every: int = 10

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, ("mnist-5k", "mnist", "fashion-mnist"))
        _check_range("steps", self.steps, 1, 10_000_000, integer=True)
        _check_range("batch_size", self.batch_size, 1, 4096, integer=True)
        _check_range("learning rate", self.lr, 1e-7, 1.0)
        _check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("warmup_steps", self.warmup_steps, 0, 1_000_000, integer=True)
        _check_choice("lr_schedule", self.lr_schedule, ("cosine", "constant"))
        _check_range("lr_min_ratio", self.lr_min_ratio, 0.0, 1.0)
        _check_range("p_uncond", self.p_uncond, 0.0, 1.0)
        _check_range("ema_decay", self.ema_decay, 0.0, 0.99999)
        _check_range("grad_clip", self.grad_clip, 0.0, 1000.0)
        _check_range("min_snr_gamma", self.min_snr_gamma, 0.0, 1000.0)
        _check_range("seed", self.seed, 0, 2**31 - 1, integer=True)
        _check_range("checkpoint_every", self.checkpoint_every, 1, 10_000_000, integer=True)
        _check_range("sample_every", self.sample_every, 1, 10_000_000, integer=True)
        _check_range("log_every", self.log_every, 1, 10_000_000, integer=True)


@dataclass(frozen=True)
class SampleConfig(_Serialisable):
    """How to draw samples.

    guidance: classifier-free guidance weight w in the convention eps = (1 + w) eps_cond - w eps_uncond
        (Ho & Salimans 2022, as in TeaPearce's conditional MNIST DDPM): w = 0 is plain conditional sampling.
    steps: number of denoising steps (<= T); ddpm with steps < T uses a strided ancestral chain.
    eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like variance).
    add_noise: ancestral noise in DDPM steps; False gives the "wrong sampler" teaching example.
    guidance_interval: (lo, hi) as fractions of T: guidance applies only to steps with lo <= t / T <= hi, the
        others run the conditional model alone (one forward of B images instead of 2B). Guidance matters while
        the digit's identity is decided, at high noise; applying it in a limited interval follows Kynkaenniemi
        et al. 2024. (0, 1) = every step.
    """

    sampler: str = "ddim"
    steps: int = 25
    guidance: float = 2.0
    eta: float = 0.0
    clip_x0: bool = True
    add_noise: bool = True
    seed: int = 0
    guidance_interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        from .samplers import names as sampler_names   # the registry (imported here: it imports the schedule)

        _check_choice("sampler", self.sampler, sampler_names())
        _check_range("sampling steps", self.steps, 1, 10000, integer=True)
        _check_range("guidance weight", self.guidance, 0.0, 10.0)
        _check_range("eta", self.eta, 0.0, 1.0)
        _check_range("seed", self.seed, 0, 2**31 - 1, integer=True)
        gi = self.guidance_interval
        if not isinstance(gi, (tuple, list)) or len(gi) != 2:
            raise ConfigError(f"guidance interval must be two fractions (lo, hi) of T, got {gi!r}")
        for v in gi:
            _check_range("guidance interval end", v, 0.0, 1.0)
        if gi[0] >= gi[1]:
            raise ConfigError(f"guidance interval must have lo < hi, got {tuple(gi)!r}")
        object.__setattr__(self, "guidance_interval", (float(gi[0]), float(gi[1])))

    def guidance_at(self, t: int, T: int) -> float:
        """The guidance weight used at timestep t (0 outside the guidance interval)."""
        lo, hi = self.guidance_interval
        return self.guidance if lo <= t / T <= hi else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.guidance_interval == (0.0, 1.0):   # the classic every-step guidance: keep older cache keys valid
            del d["guidance_interval"]
        else:
            d["guidance_interval"] = list(self.guidance_interval)
        return d
