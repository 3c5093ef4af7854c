"""Diffusion Lab engine: the maths, models, training and evaluation behind the dashboard.

Never imports streamlit; usable from a notebook, the CLI (`python -m engine ...`) and tests.
"""
from .config import ConfigError, ModelConfig, SampleConfig, ScheduleConfig, TrainConfig  # noqa: F401
from .schedule import NoiseSchedule  # noqa: F401

__all__ = ["ConfigError", "ModelConfig", "SampleConfig", "ScheduleConfig", "TrainConfig", "NoiseSchedule"]
