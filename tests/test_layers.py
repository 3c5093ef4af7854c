import subprocess
import sys


def test_engine_never_imports_streamlit():
    code = ("import sys, engine, engine.training, engine.sampling, engine.metrics, engine.clip_eval, "
            "engine.applications, engine.style, engine.bench, engine.__main__; "
            "print('streamlit' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
