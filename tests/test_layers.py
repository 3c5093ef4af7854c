import subprocess
import sys

LIBRARY = ("engine, engine.training, engine.sampling, engine.metrics, engine.clip_eval, engine.clip_train, "
           "engine.applications, engine.style, engine.accel, engine.summary, engine.introspect, engine.unet, "
           "engine.checkpoints, engine.__main__")


def test_engine_never_imports_streamlit_nor_the_benchmark():
    code = (f"import sys, {LIBRARY}; "
            "print('streamlit' in sys.modules, any(m == 'benchmarks' or m.startswith('benchmarks.') "
            "for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False False"


def test_the_benchmark_imports_the_engine_but_not_streamlit():
    """It drives the dashboard through subprocesses (streamlit run, AppTest), never in its own process."""
    code = "import sys, benchmarks; print('engine.training' in sys.modules, 'streamlit' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "True False"
