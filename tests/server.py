"""`streamlit run dashboard.py` on a free loopback port, for the browser and load tests (never another address)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(runs_root: Path, log_path: Path, port: int | None = None, **extra_env: str) -> tuple[str, subprocess.Popen]:
    """Start the dashboard (runs in `runs_root`, log to a file nobody has to drain) and wait until it is healthy.

    Returns (base url, process); raises RuntimeError with the log's tail if it exits or stays unhealthy for 60 s.
    """
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DIFFUSION_LAB_RUNS": str(runs_root),
           "DIFFUSION_LAB_WORKBOOKS": str(runs_root / "workbooks"), **extra_env}    # never the repository's
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard.py"),
                             "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return url, proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.25)
    stop(proc)
    raise RuntimeError("streamlit did not become healthy: " + Path(log_path).read_text()[-2000:])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
