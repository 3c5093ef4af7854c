"""engine/cli/bench.py: the command is a thin caller of benchmarks.run_bench (the benchmark's own tests are
tests/test_bench.py)."""
import json
import sys
import types

import pytest

from engine.cli import main


@pytest.fixture
def fake_bench(monkeypatch):
    calls = []

    def run_bench(**kwargs):
        calls.append(kwargs)
        return {"matmul_gflops": 123.4, "time_to_95_curve": [1, 2]}

    monkeypatch.setitem(sys.modules, "benchmarks", types.SimpleNamespace(run_bench=run_bench))
    return calls


def test_bench_passes_the_flags_and_writes_the_figures(tmp_path, fake_bench, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--device", "cpu", "--threads", "1", "--no-peer", "--out", str(out)]) == 0
    (kwargs,) = fake_bench
    assert kwargs["quick"] and not kwargs["peer"] and kwargs["threads"] == 1 and kwargs["ttq_cap_s"] == 480.0
    assert kwargs["time_to_quality_recipes"] == () and str(kwargs["device"]) == "cpu"
    assert json.loads(out.read_text()) == {"matmul_gflops": 123.4, "time_to_95_curve": [1, 2]}
    printed = capsys.readouterr().out
    assert "matmul_gflops" in printed and "123.4" in printed and "time_to_95_curve" not in printed


@pytest.mark.parametrize("flags, recipes", [
    ([], ("tiny", "fast", "default", "peer")),             # the full bench times every recipe
    (["--time-to-quality", "tiny,peer"], ("tiny", "peer")),
    (["--time-to-quality", ""], ()),
    (["--quick", "--time-to-quality", "fast"], ("fast",)),
])
def test_time_to_quality_recipes(fake_bench, flags, recipes):
    assert main(["bench", "--device", "cpu", *flags]) == 0
    assert fake_bench[0]["time_to_quality_recipes"] == recipes


def test_a_missing_benchmarks_package_is_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "benchmarks", None)          # `import benchmarks` fails as if it were absent
    assert main(["bench", "--quick"]) == 2
    assert "top-level `benchmarks` package" in capsys.readouterr().err
