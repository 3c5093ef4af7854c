"""engine/presets.py: the named recipes and a learner's customisation of them."""
import re

import pytest

import engine.presets as presets
from engine.config import ConfigError
from engine.presets import PRESETS, customise, get_preset
from engine.training.runs import model_size


def test_every_preset_is_valid_and_named_by_its_key():
    for name, p in PRESETS.items():
        assert p.name == name and p.description
        assert p.recommended.steps <= p.schedule.T


def test_the_docstring_parameter_counts_are_the_models():
    stated = re.findall(r"^\s+(\w+)\s+([\d.]+) M params", presets.__doc__, re.M)
    assert [name for name, _ in stated] == ["tiny", "fast", "default"]
    for name, millions in stated:
        params, _ = model_size(get_preset(name).model)
        assert round(params / 1e6, 2) == float(millions), name


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of live, tiny, default"):
        get_preset("huge")


def test_customise_changes_only_what_was_asked():
    base = get_preset("tiny")
    p = customise("tiny", base_channels=24, num_res_blocks=2, kind="linear", T=500, steps=77, batch_size=32,
                  lr=1e-3, p_uncond=0.2, seed=9)
    assert (p.model.base_channels, p.model.num_res_blocks) == (24, 2)
    assert p.model.replace(base_channels=16, num_res_blocks=1) == base.model        # nothing else moved
    assert (p.schedule.kind, p.schedule.T) == ("linear", 500)
    assert (p.train.steps, p.train.batch_size, p.train.lr, p.train.p_uncond, p.train.seed) == (77, 32, 1e-3, 0.2, 9)
    assert p.train.replace(steps=base.train.steps, batch_size=base.train.batch_size, lr=base.train.lr,
                           p_uncond=base.train.p_uncond, seed=base.train.seed) == base.train
    assert p.recommended == base.recommended and p.name == "tiny"
    assert PRESETS["tiny"] is base and base.model.base_channels == 16                # the preset itself is untouched


def test_customise_ignores_none_and_follows_a_smaller_T():
    assert customise("default", base_channels=None, lr=None) == get_preset("default")
    p = customise("default", T=10)
    assert p.schedule.T == 10 and p.recommended.steps == 10                           # 25 steps cannot fit T = 10
    assert customise("default", T=100).recommended.steps == get_preset("default").recommended.steps


@pytest.mark.parametrize("overrides, message", [
    ({"width": 32}, "unknown setting.*width"),
    ({"base_channels": 30}, "multiple of 4.*got 30"),
    ({"lr": 5.0}, "learning rate must be between.*got 5.0"),
    ({"T": 0}, "T"),
    ({"steps": -1}, "steps must be between.*got -1"),
])
def test_customise_refuses_bad_values_with_the_value_in_the_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        customise("tiny", **overrides)
