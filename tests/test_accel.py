import pytest
import torch

from engine.accel import CompiledDenoiser, warm_up
from engine.config import SampleConfig
from engine.sampling import sample
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


def test_a_failing_compile_falls_back_to_the_eager_model_and_keeps_the_reason(tiny_model, monkeypatch):
    def broken_compile(model, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nlong traceback")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    wrapped = CompiledDenoiser(tiny_model)
    assert wrapped.active and wrapped.cfg is tiny_model.cfg
    s = NoiseSchedule(TINY_SCHEDULE)
    y = torch.tensor([1, 4])
    got = sample(wrapped, s, y, SampleConfig(steps=4, guidance=1.0), seeds=[5, 6])
    assert not wrapped.active and wrapped.error == "RuntimeError: no C++ compiler found"
    assert torch.equal(got, sample(tiny_model, s, y, SampleConfig(steps=4, guidance=1.0), seeds=[5, 6]))


@pytest.mark.slow
def test_compiled_denoiser_gives_the_eager_numbers(tiny_model):
    wrapped = CompiledDenoiser(tiny_model)
    warm_up(wrapped, (3,))
    assert wrapped.active, wrapped.error
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([1, 20, 40]), torch.tensor([0, 5, 10])
    with torch.inference_mode():
        torch.testing.assert_close(wrapped(x, t, y), tiny_model(x, t, y), rtol=1e-4, atol=1e-5)
