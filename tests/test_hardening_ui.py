"""Classroom hardening, the UI half: the server binds loopback unless `make classroom` widens it (with HTTPS when
the instructor has a certificate), learners see one path-free line instead of a traceback, and the training form
refuses models too large for the machine."""
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard.py")


def test_config_binds_loopback_and_hides_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] in ("type", "none")


def _classroom(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`make classroom` with streamlit replaced by echo (prints the command it would run) and no venv setup."""
    return subprocess.run(["make", "-s", "-o", ".venv/bin/.runtime-installed", "classroom", "STREAMLIT=echo", *args],
                          cwd=ROOT, env={**os.environ, "DIFFUSION_LAB_PASSCODE": "x", **env}, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_classroom_serves_https_with_a_certificate_and_warns_without(tmp_path):
    env = {"DIFFUSION_LAB_CERT": "", "DIFFUSION_LAB_KEY": ""}
    plain = _classroom(env)
    assert plain.returncode == 0 and "passcode crosses the room's network in clear" in plain.stdout
    assert "openssl req -x509" in plain.stdout and "sslCertFile" not in plain.stdout
    assert "--server.address 0.0.0.0" in plain.stdout

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-")
    key.write_text("-")
    for given in ({"DIFFUSION_LAB_CERT": str(cert), "DIFFUSION_LAB_KEY": str(key)}, {}):
        args = () if given else (f"CERT={cert}", f"KEY={key}")
        https = _classroom({**env, **given}, *args)
        assert https.returncode == 0, https.stdout + https.stderr
        assert f'--server.sslCertFile {cert} --server.sslKeyFile {key}' in https.stdout
        assert "in clear" not in https.stdout

    missing = _classroom(env, f"CERT={tmp_path / 'nope.pem'}", f"KEY={key}")
    assert missing.returncode != 0 and "nope.pem not found" in missing.stdout
    assert "run dashboard.py" not in missing.stdout                    # refused before streamlit starts
    half = _classroom(env, f"CERT={cert}")
    assert half.returncode != 0 and "needs both CERT=... and KEY=..." in half.stdout


# -- errors: logged in full, shown short -------------------------------------------------------------------------------
@pytest.fixture
def dashboard(tmp_path, monkeypatch):
    import ui.resources as res

    monkeypatch.setattr(res, "RUNS_ROOT", tmp_path)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    yield at
    res.get_trainer().stop(wait=30)
    st.cache_resource.clear()


def test_a_page_error_shows_one_line_without_server_paths_and_logs_the_traceback(dashboard, monkeypatch):
    import ui.errors as errors

    def broken(*args, **kwargs):           # Home's links: past its title, outside any try of its own
        raise ValueError(f"cannot read {ROOT}/checkpoints/default/report.json (see {Path.home()}/notes.txt)")

    logged = []
    from streamlit.delta_generator import DeltaGenerator

    monkeypatch.setattr(DeltaGenerator, "page_link", broken)       # st.page_link and a column's .page_link
    monkeypatch.setattr(errors.LOG, "error", lambda msg, exc_info=None: logged.append(exc_info))
    dashboard.run()
    assert not dashboard.exception
    (shown,) = [e.value for e in dashboard.error]
    assert shown.startswith("This page hit an error (`ValueError: cannot read checkpoints/default/report.json "
                            "(see ~/notes.txt)`). The details are in the server's log.")
    assert str(ROOT) not in shown and str(Path.home()) not in shown
    assert len(logged) == 1 and isinstance(logged[0], ValueError) and logged[0].__traceback__ is not None
    assert dashboard.title[0].value == "Diffusion Lab"                 # drawn before the error: it stays


def _control_flow_app():
    import streamlit as st

    from ui import errors

    def page():
        st.markdown("before")
        if st.session_state.get("reruns", 0) < 1:
            st.session_state["reruns"] = st.session_state.get("reruns", 0) + 1
            st.rerun()
        st.stop()

    errors.run_page(page)
    st.markdown("after st.stop: never drawn")


def test_st_stop_and_st_rerun_pass_through_the_page_wrapper():
    at = AppTest.from_function(_control_flow_app, default_timeout=30).run()
    assert not at.exception and not at.error
    assert at.session_state["reruns"] == 1 and [m.value for m in at.markdown] == ["before"]


def _refused_app():
    import streamlit as st

    from ui import compute, errors

    def page():
        st.markdown("before")
        raise compute.Refused("You have used the 30 s of computing a learner gets per 60 s.")

    errors.run_page(page)


def test_a_refusal_by_the_compute_budget_ends_the_page_with_a_warning_not_an_error():
    at = AppTest.from_function(_refused_app, default_timeout=30).run()
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown] == ["before"]
    assert [w.value for w in at.warning] == ["You have used the 30 s of computing a learner gets per 60 s."]
