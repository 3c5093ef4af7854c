import pytest
import torch

from engine.accel import CompiledDenoiser, warm_up
from engine.config import SampleConfig
from engine.sampling import sample
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


@pytest.fixture
def broken_compile(monkeypatch):
    """torch.compile whose compiled module fails at its first call, as it does without a C++ compiler."""
    def compile_(model, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nlong traceback")
        return run
    monkeypatch.setattr(torch, "compile", compile_)


def test_a_failing_compile_falls_back_to_the_eager_model_and_keeps_the_reason(tiny_model, broken_compile):
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


def _run(tmp_path, name):
    from engine.training import TrainingRun

    from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_TRAIN
    return TrainingRun(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=3), TINY_SAMPLE, tmp_path / name)


def test_a_failing_training_compile_says_why_and_trains_eagerly(tmp_path, broken_compile):
    run = _run(tmp_path, "a")
    before = [p.detach().clone() for p in run.model.parameters()]
    note = run.compile_model()
    assert "torch.compile failed" in note and "RuntimeError: no C++ compiler found" in note
    assert run.trained is run.model
    assert all(p.grad is None for p in run.model.parameters())
    assert all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))   # the warm-up changed nothing
    run.step()
    assert run.step_count == 1


@pytest.mark.slow
def test_compiled_training_takes_the_eager_steps(tmp_path):
    eager, compiled = _run(tmp_path, "eager"), _run(tmp_path, "compiled")
    note = compiled.compile_model()
    assert compiled.trained is not compiled.model, note
    a, b = eager.step(), compiled.step()              # same weights, same batch: same loss and gradients
    assert abs(a.loss - b.loss) < 1e-4 * max(1.0, abs(a.loss))
    scale = max(p.grad.abs().max() for p in eager.model.parameters())
    for p, q in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4 * scale)
    for _ in range(2):
        # (Adam moves a weight with a near-zero gradient by up to lr either way on rounding, so the weights are
        # compared through the loss, not one by one)
        a, b = eager.step(), compiled.step()
        assert abs(a.loss - b.loss) < 1e-3 * max(1.0, abs(a.loss))
