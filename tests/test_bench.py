"""benchmarks/: the pieces run on tiny settings (figures are printed by `python -m engine bench`, never asserted)."""
import ast
from pathlib import Path

import pytest
import torch

from benchmarks import run_bench
from benchmarks.dashboard import forward_page_ms, forward_slider_ms
from benchmarks.machine import matmul_gflops
from benchmarks.peer import PeerConfig, PeerUNet, peer_recipe
from benchmarks.sampling import fast_model_sampling
from benchmarks.timing import median_time
from benchmarks.training import time_to_quality, train_throughput
from engine.config import ScheduleConfig
from engine.schedule import NoiseSchedule
from engine.unet import build_model

from .conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parent.parent


def test_median_time_is_the_median_of_the_timed_calls_after_the_warm_up():
    calls = []
    dt = median_time(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and 0 <= dt < 0.01


def test_bench_pieces_run_and_return_numbers():
    assert matmul_gflops(n=64, repeats=1) > 0
    s = NoiseSchedule(ScheduleConfig(T=50))
    assert train_throughput(build_model(TINY_MODEL), 8, 1, s) > 0
    f = forward_slider_ms(2)
    assert f["forward_slider_ms"] > 0 and f["forward_strip_ms"] > 0


def test_the_peer_states_what_the_engine_reads_and_trains_without_label_dropout():
    peer = PeerUNet()
    assert peer.cfg == PeerConfig() and peer.cfg.null_class == 10 and peer.cfg.style_dim == 0
    out = peer(torch.randn(2, 1, 28, 28), torch.tensor([3, 7]), torch.tensor([1, 10]))
    assert out.shape == (2, 1, 28, 28)
    assert train_throughput(peer, 4, 1, NoiseSchedule(ScheduleConfig(T=50)), p_uncond=0.0) > 0
    recipe = peer_recipe()
    assert recipe.train.p_uncond == 0.0 and recipe.sample.guidance == 0.0 and recipe.schedule.T == 1000


def test_time_to_quality_protocol_runs_for_ours_and_the_peer():
    for recipe in ("tiny", "peer"):
        r = time_to_quality(recipe, cap_s=1.0, eval_every_s=0.5, per_class=1, log=lambda *_: None)
        assert r["curve"] and all(0.0 <= c["judge_accuracy"] <= 1.0 for c in r["curve"])
        assert r["curve"][-1]["steps"] >= 1            # the cap stops training after the step that crosses it
        assert r["time_to_target_s"] is None or r["time_to_target_s"] == r["curve"][-1]["train_s"]
        steps = [c["steps"] for c in r["curve"]]
        assert steps == sorted(steps)                   # training continues between evaluations
    assert r["guidance"] == 0.0                       # the peer recipe has no null class: it samples unguided


def test_forward_page_latency_is_measured_in_the_page():
    f = forward_page_ms(2)
    assert f["forward_panel_ms"] > 0 and f["forward_page_ms"] >= f["forward_panel_ms"]


def test_fast_model_sampling_reports_seconds_and_judge_accuracy_at_its_recommendation(tmp_path):
    """The bench's figure for the shipped `fast` model, here on an untrained patch-stem model with a short config."""
    from engine.checkpoints import save_checkpoint
    from engine.config import SampleConfig

    mc = TINY_MODEL.replace(patch_size=2)
    path = save_checkpoint(tmp_path / "fast", model=build_model(mc), ema_model=None, model_config=mc,
                           schedule_config=ScheduleConfig(T=50), train_config=None,
                           recommended=SampleConfig(guidance=0.4, guidance_interval=(0.6, 1.0)))
    r = fast_model_sampling(path, quick=True, log=lambda *_: None)
    assert r["sample_100_ddim25_fast_s"] > 0 and 0.0 <= r["sample_100_ddim25_fast_judge_accuracy"] <= 1.0
    assert r["sample_fast_guidance_interval"] == [0.6, 1.0] and r["sample_fast_guidance"] == 0.4


def test_fewstep_figures_pick_the_fastest_candidate_that_meets_the_bar(tmp_path, monkeypatch):
    """The few-step figure tries every candidate and reports the fastest one meeting the bar, or None if none does."""
    from benchmarks import fewstep
    from engine.checkpoints import save_checkpoint
    from engine.config import SampleConfig

    mc = TINY_MODEL.replace(patch_size=2)
    save_checkpoint(tmp_path / "checkpoints" / "fast", model=build_model(mc), ema_model=None, model_config=mc,
                    schedule_config=ScheduleConfig(T=50), train_config=None,
                    recommended=SampleConfig(guidance=0.4, guidance_interval=(0.6, 1.0)))
    monkeypatch.setattr(fewstep, "SOLVER_STEPS", (5, 8))
    assert [(p.name, s, n) for p, s, n in fewstep.candidates(tmp_path)] == [
        ("fast", "unipc", 5), ("fast", "unipc", 8), ("fast", "dpmpp-2m", 5), ("fast", "dpmpp-2m", 8)]
    r = fewstep.fewstep_sampling(quick=True, log=lambda *_: None, root=tmp_path)
    rows = r["fewstep_candidates"]
    assert len(rows) == 4 and all(row["seconds_100"] > 0 and 0 <= row["judge_accuracy"] <= 1 for row in rows)
    assert not any(row["meets_bar"] for row in rows)            # an untrained model draws no digits
    assert r["sample_100_fewstep_s"] is None and r["sample_fewstep_model"] is None
    fake = [dict(rows[0], seconds_100=0.5, meets_bar=True), dict(rows[1], seconds_100=0.2, meets_bar=True),
            dict(rows[2], seconds_100=0.1, meets_bar=False), dict(rows[3], seconds_100=0.3, meets_bar=True)]
    monkeypatch.setattr(fewstep, "measure", lambda *a, **k: fake.pop(0))
    r = fewstep.fewstep_sampling(quick=True, log=lambda *_: None, root=tmp_path)
    assert (r["sample_100_fewstep_s"], r["sample_fewstep_sampler"], r["sample_fewstep_steps"]) == (0.2, "unipc", 8)


def test_fewstep_candidates_include_the_flow_model_with_its_samplers(tmp_path, monkeypatch):
    from benchmarks import fewstep
    from engine.checkpoints import save_checkpoint
    from engine.config import SampleConfig

    mc = TINY_MODEL.replace(patch_size=2)
    save_checkpoint(tmp_path / "checkpoints" / "flow", model=build_model(mc), ema_model=None, model_config=mc,
                    schedule_config=ScheduleConfig(kind="flow", T=50), train_config=None,
                    recommended=SampleConfig(sampler="euler", guidance=0.4, guidance_interval=(0.6, 1.0)))
    monkeypatch.setattr(fewstep, "SOLVER_STEPS", (5,))
    assert [(p.name, s, n) for p, s, n in fewstep.candidates(tmp_path)] == [
        ("flow", "euler", 5), ("flow", "unipc", 5), ("flow", "heun", 3), ("flow", "heun", 4), ("flow", "heun", 5)]


def test_run_bench_keeps_its_signature():
    import inspect

    params = list(inspect.signature(run_bench).parameters)
    assert params == ["quick", "checkpoint", "threads", "peer", "time_to_quality_recipes", "ttq_cap_s", "log",
                      "device"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_pages_ui_and_the_library_never_import_the_benchmark():
    """The benchmark drives the dashboard; nothing the dashboard or the library runs may import it (only the
    command line's bench command does)."""
    files = [*ROOT.glob("pages/*.py"), *ROOT.glob("ui/*.py"), ROOT / "dashboard.py", *ROOT.glob("engine/*.py"),
             *ROOT.glob("engine/*/*.py")]
    cli = {ROOT / "engine" / "__main__.py", *ROOT.glob("engine/cli/*.py")}
    offenders = [str(f.relative_to(ROOT)) for f in files if f not in cli
                 and any(n == "benchmarks" or n.startswith("benchmarks.") for n in _imports(f))]
    assert offenders == []
    assert not (ROOT / "engine" / "bench.py").exists()


@pytest.mark.gpu
def test_bench_pieces_run_on_a_gpu(tmp_path):
    """`python -m engine bench` on a GPU machine (device auto): the same pieces, timed with synchronisation."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from engine.accel import to_device

    dev = torch.device("cuda")
    assert matmul_gflops(device=dev) > 0
    s = NoiseSchedule(ScheduleConfig(T=50))
    assert train_throughput(to_device(build_model(TINY_MODEL), dev), 8, 1, s, dev) > 0
    assert train_throughput(PeerUNet().to(dev), 4, 1, s, dev, p_uncond=0.0) > 0
    for recipe in ("tiny", "peer"):
        r = time_to_quality(recipe, cap_s=1.0, eval_every_s=0.5, per_class=1, log=lambda *_: None, device=dev)
        assert r["curve"] and r["curve"][-1]["steps"] >= 1
