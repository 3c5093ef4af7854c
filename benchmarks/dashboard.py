"""The dashboard's own timings, on the CPU: the Forward page's slider (the maths alone and the page's server
time), the server's cold start, and the dashboard's first page with its peak memory.

This is the part that makes the benchmark an app-level tool: it starts `streamlit run dashboard.py` and drives
pages through streamlit's AppTest, so it knows page paths and session-state keys ("forward.t",
"forward.panel_ms"). Each measurement runs in a subprocess, so this process's imports and threads do not count.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from engine.config import ScheduleConfig
from engine.data import load as load_data
from engine.schedule import NoiseSchedule, noising_strip

from .timing import median_time

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboard.py"


def forward_slider_ms(repeats: int = 50) -> dict:
    """Milliseconds of the Forward page's maths: one q_sample of a digit, and the 11-image noising strip."""
    schedule = NoiseSchedule(ScheduleConfig())
    _, held = load_data("mnist-5k")
    x0 = held.images[:1]
    noise = torch.randn_like(x0)
    one = median_time(lambda: schedule.q_sample(x0, torch.tensor([500]), noise), repeats, warmup=3)
    strip = median_time(lambda: noising_strip(schedule, x0, [i / 10 for i in range(11)], noise), repeats, warmup=3)
    return {"forward_slider_ms": round(1000 * one, 3), "forward_strip_ms": round(1000 * strip, 3)}


def forward_page_ms(moves: int = 10) -> dict:
    """Server time per Forward-slider move, measured in the page itself (streamlit's AppTest, subprocess).

    `forward_panel_ms`: the slider panel (an st.fragment: all a slider move reruns in the browser), timed by the
    panel into session state. `forward_page_ms`: a whole rerun of the page with its frame, as AppTest sees it
    (includes AppTest's own polling, so an upper bound).
    """
    code = ("import os,time,statistics,json;os.environ['HF_HUB_OFFLINE']='1';"
            "from streamlit.testing.v1 import AppTest;"
            f"at=AppTest.from_file({str(DASHBOARD)!r},default_timeout=300);at.run();"
            "at.switch_page('pages/forward_process.py').run();w=[];p=[]\n"
            f"for i in range({moves}):\n"
            " t0=time.perf_counter();at.slider(key='forward.t').set_value(37+97*i).run()\n"
            " w.append(time.perf_counter()-t0);p.append(at.session_state['forward.panel_ms'])\n"
            "print(json.dumps([1000*statistics.median(w),statistics.median(p)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    page, panel = json.loads(out.stdout.strip().splitlines()[-1])
    return {"forward_panel_ms": round(panel, 2), "forward_page_ms": round(page, 2)}


def cold_start_s(timeout: float = 120.0) -> float | None:
    """Seconds from `streamlit run dashboard.py` to the server answering its health check (None: no answer
    within `timeout`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(DASHBOARD), "--server.headless",
                             "true", "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                    return round(time.perf_counter() - t0, 2)
            except OSError:
                time.sleep(0.1)
        return None
    finally:
        proc.terminate()
        proc.wait(10)


def first_page_s() -> tuple[float, float]:
    """(seconds, peak RSS in MB) for the dashboard script plus its first page to run once (AppTest, in a fresh
    process, models loaded on the way)."""
    code = ("import time,os;os.environ['HF_HUB_OFFLINE']='1';t=time.perf_counter();"
            "from streamlit.testing.v1 import AppTest;"
            f"at=AppTest.from_file({str(DASHBOARD)!r},default_timeout=300);at.run();"
            "import resource;print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    secs, rss_kb = out.stdout.strip().split()[-2:]
    return round(float(secs), 2), round(int(rss_kb) / 1024, 1)


LANDING_CODE = """
import json, os, sys, time
os.environ['HF_HUB_OFFLINE'] = '1'
import streamlit as st
from streamlit.testing.v1 import AppTest
from ui.worksheet_content import PROMPTS
at = AppTest.from_file(sys.argv[1], default_timeout=600)
at.run()                                   # the server's start: models load once (st.cache_resource)
for page in sorted({p.page for p in PROMPTS}):
    at.switch_page(page).run()             # and its pages' modules are imported by the first visitors
out = {}
for p in PROMPTS:
    st.cache_data.clear()                  # each landing pays for its own data, as on a fresh server
    at = AppTest.from_file(sys.argv[1], default_timeout=600)
    at.run()
    for name, value in p.preset.items():   # what the Worksheet's "Show me" does
        at.session_state[p.namespace + '.' + name] = value
    t0 = time.perf_counter()
    at.switch_page(p.page).run()
    out[p.number] = [round(time.perf_counter() - t0, 2), len(at.exception)]
print(json.dumps(out))
"""


def landing_views_s() -> dict:
    """Server seconds for each worksheet prompt's "Show me" to land (its page with its preset) on a running
    server: models loaded and every page visited once (imports), the pages' data caches cleared before each
    landing, so each pays for its own computations (AppTest, in a subprocess).
    Returns {"landing_s": {prompt: seconds}, "landing_exceptions": {prompt: count}} (exceptions: should be 0)."""
    out = subprocess.run([sys.executable, "-c", LANDING_CODE, str(DASHBOARD)], capture_output=True, text=True,
                         cwd=ROOT, timeout=1800, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        got = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError("the landing-view timing failed: " + out.stderr[-2000:]) from None
    return {"landing_s": {k: v[0] for k, v in got.items()}, "landing_exceptions": {k: v[1] for k, v in got.items()}}
