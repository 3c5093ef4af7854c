"""Classroom roles: learners cannot start, pause or stop training; the passcode unlocks the instructor."""
import os

import pytest
from hypothesis import given, strategies as st_

import streamlit as st
from streamlit.testing.v1 import AppTest

from ui.roles import check_passcode
from ui.state import Param, float_in, int_in, one_of, parse_params

APP = os.path.join(os.path.dirname(__file__), "..", "dashboard.py")


def test_passcode_comparison():
    assert check_passcode("s3cret", "s3cret")
    assert not check_passcode("s3cre", "s3cret") and not check_passcode("", "") and not check_passcode("x", None)


@pytest.fixture
def classroom(monkeypatch, tmp_path):
    import ui.resources as res

    monkeypatch.setenv("DIFFUSION_LAB_CLASSROOM", "1")
    monkeypatch.setenv("DIFFUSION_LAB_PASSCODE", "open-sesame")
    monkeypatch.setattr(res, "RUNS_ROOT", tmp_path)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    yield at
    res.get_trainer().stop(wait=30)
    st.cache_resource.clear()


def test_learner_cannot_start_or_stop_training(classroom):
    import ui.resources as res

    at = classroom
    assert any("Role: **learner**" in c.value for c in at.caption)
    at.switch_page("pages/training.py").run()
    start = [b for b in at.button if b.label == "Start training"][0]
    assert start.disabled and any("You are a learner" in i.value for i in at.info)
    assert all(b.disabled for b in at.button if b.label in ("Pause", "Resume", "Stop"))
    assert res.get_trainer().status().state == "idle"
    # unlocking with the passcode is tested in a real browser (tests/test_browser.py): AppTest drops the
    # sidebar of a st.navigation app after the first run, so it cannot type into the sidebar form


PARAMS = [Param("t", 5, int_in(0, 999)), Param("w", 2.0, float_in(0.0, 10.0)), Param("s", "ddim", one_of("ddim", "ddpm"))]


@given(st_.dictionaries(st_.sampled_from(["t", "w", "s", "other"]), st_.text(max_size=30)))
def test_link_parser_never_raises_and_only_returns_valid_values(raw):
    values, notes = parse_params(raw, PARAMS)
    assert set(values) <= {"t", "w", "s"}
    if "t" in values:
        assert 0 <= values["t"] <= 999
    if "w" in values:
        assert 0.0 <= values["w"] <= 10.0
    if "s" in values:
        assert values["s"] in ("ddim", "ddpm")
    assert len(values) + len(notes) == len(set(raw) & {"t", "w", "s"})
