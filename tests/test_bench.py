"""The benchmark's pieces run on tiny settings (figures are printed by `python -m engine bench`, never asserted)."""
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
