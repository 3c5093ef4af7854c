"""The benchmark's pieces run on tiny settings (figures are printed by `python -m engine bench`, never asserted)."""
import pytest
import torch

from engine import bench
from engine.config import ScheduleConfig
from engine.schedule import NoiseSchedule
from engine.unet import build_model

from .conftest import TINY_MODEL


def test_bench_pieces_run_and_return_numbers():
    assert bench.matmul_gflops(n=64, repeats=1) > 0
    s = NoiseSchedule(ScheduleConfig(T=50))
    assert bench.train_throughput(build_model(TINY_MODEL), 8, 1, s) > 0
    peer = bench.PeerUNet()
    out = peer(torch.randn(2, 1, 28, 28), torch.tensor([3, 7]), torch.tensor([1, 10]))
    assert out.shape == (2, 1, 28, 28)
    assert bench.train_throughput(peer, 4, 1, s) > 0
    f = bench.forward_slider_ms(2)
    assert f["forward_slider_ms"] > 0 and f["forward_strip_ms"] > 0


def test_time_to_quality_protocol_runs_for_ours_and_the_peer():
    for recipe in ("tiny", "peer"):
        r = bench.time_to_quality(recipe, cap_s=1.0, eval_every_s=0.5, per_class=1, log=lambda *_: None)
        assert r["curve"] and all(0.0 <= c["judge_accuracy"] <= 1.0 for c in r["curve"])
        assert r["curve"][-1]["steps"] >= 1            # the cap stops training after the step that crosses it
        assert r["time_to_target_s"] is None or r["time_to_target_s"] == r["curve"][-1]["train_s"]
    assert r["guidance"] == 0.0                       # the peer recipe has no null class: it samples unguided


def test_forward_page_latency_is_measured_in_the_page():
    f = bench.forward_page_ms(2)
    assert f["forward_panel_ms"] > 0 and f["forward_page_ms"] >= f["forward_panel_ms"]


def test_fast_model_sampling_reports_seconds_and_judge_accuracy_at_its_recommendation(tmp_path):
    """The bench's figure for the shipped `fast` model, here on an untrained patch-stem model with a short config."""
    from engine.checkpoints import save_checkpoint
    from engine.config import SampleConfig

    mc = TINY_MODEL.replace(patch_size=2)
    path = save_checkpoint(tmp_path / "fast", model=build_model(mc), ema_model=None, model_config=mc,
                           schedule_config=ScheduleConfig(T=50), train_config=None,
                           recommended=SampleConfig(guidance=0.4, guidance_interval=(0.6, 1.0)))
    r = bench.fast_model_sampling(path, quick=True, log=lambda *_: None)
    assert r["sample_100_ddim25_fast_s"] > 0 and 0.0 <= r["sample_100_ddim25_fast_judge_accuracy"] <= 1.0
    assert r["sample_fast_guidance_interval"] == [0.6, 1.0]


@pytest.mark.gpu
def test_bench_pieces_run_on_a_gpu(tmp_path):
    """`python -m engine bench` on a GPU machine (device auto): the same pieces, timed with synchronisation."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from engine.unet import to_device

    dev = torch.device("cuda")
    assert bench.matmul_gflops(device=dev) > 0
    s = NoiseSchedule(ScheduleConfig(T=50))
    assert bench.train_throughput(to_device(build_model(TINY_MODEL), dev), 8, 1, s, dev) > 0
    assert bench.train_throughput(bench.PeerUNet().to(dev), 4, 1, s, dev) > 0
    for recipe in ("tiny", "peer"):
        r = bench.time_to_quality(recipe, cap_s=1.0, eval_every_s=0.5, per_class=1, log=lambda *_: None, device=dev)
        assert r["curve"] and r["curve"][-1]["steps"] >= 1
