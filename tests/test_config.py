import pytest
from hypothesis import given, strategies as st

from engine.config import ConfigError, ModelConfig, SampleConfig, ScheduleConfig, TrainConfig


@pytest.mark.parametrize("make, fragment", [
    (lambda: TrainConfig(steps=-5), "steps must be between"),
    (lambda: TrainConfig(batch_size=0), "batch_size must be between"),
    (lambda: TrainConfig(lr=float("nan")), "learning rate"),
    (lambda: ModelConfig(base_channels=10_000), "width"),
    (lambda: ModelConfig(base_channels=30), "multiple of 4"),
    (lambda: ModelConfig(channel_mults=(1, 2, 2, 2)), "cannot be halved"),
    (lambda: ModelConfig(patch_size=3), "patch_size must be between 1 and 2"),
    (lambda: ModelConfig(patch_size=2, channel_mults=(1, 2, 2)), "2x2 patches and halved 2 times"),
    (lambda: ModelConfig(patch_size=2, arch="cnn", attention=False), "for arch='unet' only"),
    (lambda: SampleConfig(guidance=25), "guidance weight must be between 0 and 10, got 25"),
    (lambda: SampleConfig(sampler="lms"), "sampler must be one of ddim, ddpm"),
    (lambda: ScheduleConfig(kind="sigmoid"), "schedule must be one of"),
    (lambda: ScheduleConfig(T=0), "T (diffusion steps)"),
    (lambda: TrainConfig(steps=1.5), "whole number"),
    (lambda: SampleConfig(guidance_interval=(0.6, 0.2)), "lo < hi"),
    (lambda: SampleConfig(guidance_interval=(0.0, 1.5)), "guidance interval end must be between 0 and 1"),
    (lambda: SampleConfig(guidance_interval=(0.5,)), "two fractions"),
])
def test_bad_values_raise_clear_errors(make, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        make()
    assert fragment in str(e.value)


def test_round_trip_through_dict():
    for c in (ModelConfig(channel_mults=(1, 2)), ModelConfig(patch_size=2, channel_mults=(1, 1)), ScheduleConfig(kind="linear", T=300), TrainConfig(lr=1e-3),
              SampleConfig(sampler="ddpm", steps=100), SampleConfig(guidance_interval=(0.5, 1.0))):
        assert type(c).from_dict(c.to_dict()) == c


def test_every_step_guidance_keeps_the_older_dict_so_cache_keys_stay_valid():
    assert "guidance_interval" not in SampleConfig().to_dict()
    assert SampleConfig(guidance_interval=[0.5, 1]).to_dict()["guidance_interval"] == [0.5, 1.0]
    limited = SampleConfig(guidance=2.0, guidance_interval=(0.5, 1.0))
    assert limited.guidance_at(999, 1000) == 2.0 and limited.guidance_at(500, 1000) == 2.0
    assert limited.guidance_at(499, 1000) == 0.0


def test_unknown_field_is_reported():
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({"stepz": 10})


@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none(), st.booleans()))
def test_train_steps_validator_never_crashes_otherwise(value):
    """Any JSON-ish value either builds a valid config or raises ConfigError, never anything else."""
    try:
        c = TrainConfig(steps=value)
    except ConfigError:
        return
    assert isinstance(c.steps, int) and 1 <= c.steps <= 10_000_000
