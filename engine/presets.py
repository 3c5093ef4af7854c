"""Named model + training recipes. The Training page and `python -m engine train --preset NAME` use these.

    live      the in-class demo: a small 2x2-patch-stem U-Net, batch 32, lr 4e-3, EMA 0.98, trained by flow matching
              (velocity on the straight path; the same recipe with DDPM's noise prediction read 42-52 % at 30 s
              and 94-96 % at 60 s) — `bench --time-to-quality live`
    tiny      0.20 M params — learns visible digits within minutes on a laptop CPU
    fast      0.52 M params — no 28x28 level (2x2 patch stem): a third of the default's FLOPs per sampling step
    default   0.82 M params — the shipped model
Widths are cheap at 14x14 and 7x7 and expensive at 28x28 (a 3x3 conv costs H*W*9*Cin*Cout), so capacity
sits in the lower levels; attention runs only at 7x7 (49 tokens). Measured FLOPs and training throughput of
each are in the README's bench table (`python -m engine bench`), not repeated here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import ConfigError, ModelConfig, SampleConfig, ScheduleConfig, TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig
    schedule: ScheduleConfig
    train: TrainConfig
    recommended: SampleConfig


_DEFAULT_MODEL = ModelConfig(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention=True)
_SCHEDULE = ScheduleConfig(kind="cosine", T=1000)
_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.999, p_uncond=0.1,
                     min_snr_gamma=5.0, checkpoint_every=250, sample_every=250)
_SAMPLE = SampleConfig(sampler="ddim", steps=25, guidance=2.0)

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("live", "0.23 M params, 2x2 patch stem, batch 32, flow matching: the in-class demo, recognisable digits "
           "within about 30 s of CPU training",
           _DEFAULT_MODEL.replace(patch_size=2, base_channels=32, channel_mults=(1, 1)), _SCHEDULE.replace(kind="flow"),
           _TRAIN.replace(steps=1500, batch_size=32, lr=4e-3, warmup_steps=30, ema_decay=0.98, checkpoint_every=100,
                          sample_every=100),
           _SAMPLE.replace(sampler="euler")),
    Preset("tiny", "0.2 M params: learns visible digits within minutes on a laptop CPU (live demo)",
           ModelConfig(base_channels=16, channel_mults=(1, 2, 2), attention=False), _SCHEDULE,
           _TRAIN.replace(steps=1500, batch_size=64, ema_decay=0.995, checkpoint_every=100, sample_every=100),
           _SAMPLE),
    Preset("default", "0.8 M params, attention at 7x7: the shipped model", _DEFAULT_MODEL, _SCHEDULE, _TRAIN, _SAMPLE),
    Preset("fast", "0.5 M params, 2x2 patch stem (no 28x28 level): a third of the default's FLOPs per sampling "
           "step; trained 4x the steps (1.35x the default's training FLOPs)",
           _DEFAULT_MODEL.replace(patch_size=2, base_channels=48, channel_mults=(1, 1)), _SCHEDULE,
           _TRAIN.replace(steps=12000), _SAMPLE),
    Preset("wide", "default with 1.5x the channels at every level", _DEFAULT_MODEL.replace(base_channels=48),
           _SCHEDULE, _TRAIN, _SAMPLE),
    Preset("deep", "default with two residual blocks per level", _DEFAULT_MODEL.replace(num_res_blocks=2),
           _SCHEDULE, _TRAIN, _SAMPLE),
    Preset("no-skip", "ablation: the default U-Net without skip connections",
           _DEFAULT_MODEL.replace(skip_connections=False), _SCHEDULE, _TRAIN, _SAMPLE),
    Preset("no-time", "ablation: the default U-Net without the time embedding",
           _DEFAULT_MODEL.replace(time_embedding=False), _SCHEDULE, _TRAIN, _SAMPLE),
    Preset("plain-cnn", "ablation: a plain CNN (no down/up-sampling) with FLOPs close to the default",
           _DEFAULT_MODEL.replace(arch="cnn", attention=False), _SCHEDULE, _TRAIN, _SAMPLE),
    Preset("style", "default + stroke thickness and slant as continuous conditions (bonus B4)",
           _DEFAULT_MODEL.replace(style_dim=2), _SCHEDULE, _TRAIN.replace(steps=2000), _SAMPLE),
    Preset("one-step", "T = 1: noise in one jump, which no model can undo (worksheet 1.2)",
           ModelConfig(base_channels=16, channel_mults=(1, 2, 2), attention=False), ScheduleConfig(T=1),
           _TRAIN.replace(steps=1500, batch_size=64), SampleConfig(steps=1, guidance=2.0)),
]}


def get_preset(name: str) -> Preset:
    """The preset called `name`; ConfigError listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


MODEL_OVERRIDES = ("base_channels", "num_res_blocks")
SCHEDULE_OVERRIDES = ("kind", "T")
TRAIN_OVERRIDES = ("steps", "batch_size", "lr", "p_uncond", "seed")


def _given(overrides: dict, keys: tuple[str, ...]) -> dict:
    """The overrides among `keys` that were given (not None)."""
    return {k: v for k, v in overrides.items() if k in keys and v is not None}


def customise(name: str, **overrides) -> Preset:
    """A preset with learner overrides (width, depth, T, schedule, steps, batch, lr, p_uncond, seed), validated.

    An override of None keeps the preset's value. The recommended sampling steps follow a smaller T (a
    sampler cannot take more steps than the schedule has). Raises ConfigError with the offending value;
    unknown override names are an error too.
    """
    p = get_preset(name)
    unknown = set(overrides) - set(MODEL_OVERRIDES + SCHEDULE_OVERRIDES + TRAIN_OVERRIDES)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    model = p.model.replace(**_given(overrides, MODEL_OVERRIDES))
    schedule = p.schedule.replace(**_given(overrides, SCHEDULE_OVERRIDES))
    train = p.train.replace(**_given(overrides, TRAIN_OVERRIDES))
    rec = p.recommended.replace(steps=min(p.recommended.steps, schedule.T))
    return Preset(p.name, p.description, model, schedule, train, rec)


MAX_PARAMS = 20_000_000     # 24x the shipped default (0.82 M); the largest preset (wide) has 1.8 M


@functools.lru_cache(maxsize=64)
def parameter_count(model_config: ModelConfig) -> int:
    """Parameters of an architecture, counted on PyTorch's meta device: no memory, milliseconds even for a
    model far too large to build."""
    import torch

    from .unet import build_model, count_parameters

    with torch.device("meta"):
        return count_parameters(build_model(model_config))


def check_model_size(model_config: ModelConfig) -> int:
    """The architecture's parameter count, or ConfigError when it exceeds MAX_PARAMS: training it would need
    gigabytes for weights, EMA, gradients and Adam's moments (20 bytes a parameter, before activations), on a
    laptop shared with a class. The CLI's `train --allow-large` skips the check."""
    n = parameter_count(model_config)
    if n > MAX_PARAMS:
        default = parameter_count(PRESETS["default"].model)
        raise ConfigError(f"this model has {n / 1e6:,.1f} M parameters, {n / default:,.0f}× the shipped default's "
                          f"{default / 1e6:.2f} M: training it needs ~{20 * n / 2**30:.1f} GB for its weights, EMA, "
                          f"gradients and Adam state alone (20 bytes a parameter, before activations). Models here "
                          f"are limited to {MAX_PARAMS / 1e6:.0f} M parameters: lower the width, depth or channel "
                          f"multipliers")
    return n
