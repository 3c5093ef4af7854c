"""engine/accel.py: the speed tricks keep the maths and the state dict (UpConv, channels-last, torch.compile)."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from engine.accel import (ChannelsLastSelfAttention, CompiledDenoiser, UpConv, fast_form, speed_up, to_device,
                          warm_up)
from engine.config import SampleConfig
from engine.sampling import sample
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE, trained_like


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
    from engine.training.run import TrainingRun

    from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_TRAIN
    return TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=3), TINY_SAMPLE, tmp_path / name)


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


# -- the swap: same parameters, same state dict, same numbers ---------------------------------------------------------
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"




@pytest.mark.parametrize("size", [(7, 7), (5, 8)])
def test_upconv_equals_upsample_then_conv_in_values_and_gradients(size):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1)
    textbook = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv)
    up = UpConv(conv)
    assert up[1] is conv                                         # the very same parameters, not a copy
    x = torch.randn(2, 6, *size, requires_grad=True)
    reference, fast = textbook(x), up(x)
    assert fast.shape == reference.shape == (2, 4, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    params = [x, conv.weight, conv.bias]
    for g_fast, g_ref in zip(torch.autograd.grad(fast.square().sum(), params),
                             torch.autograd.grad(reference.square().sum(), params)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-4)
    assert list(up.state_dict()) == list(textbook.state_dict()) == ["1.weight", "1.bias"]


def test_upconv_refuses_a_conv_it_would_compute_wrongly():
    for conv in (nn.Conv2d(4, 4, 5, padding=2), nn.Conv2d(4, 4, 3, padding=1, stride=2), nn.Conv2d(4, 4, 3),
                 nn.Conv2d(4, 4, 3, padding=1, bias=False)):
        with pytest.raises(ValueError, match="UpConv replaces a 3x3"):
            UpConv(conv)


@pytest.mark.parametrize("changes", [{}, {"patch_size": 2}, {"num_heads": 1}, {"skip_connections": False},
                                     {"channel_mults": (1, 2, 2), "num_res_blocks": 2}, {"style_dim": 2}])
def test_speed_up_swaps_modules_around_the_same_parameters(changes):
    from engine.unet import SelfAttention, build_model

    from .conftest import TINY_MODEL
    cfg = TINY_MODEL.replace(**changes)
    textbook = trained_like(build_model(cfg))
    fast = trained_like(build_model(cfg))
    params_before = {k: v.data_ptr() for k, v in fast.state_dict().items()}
    assert speed_up(fast) is fast
    n_up = len(cfg.channel_mults) - 1
    assert sum(isinstance(m, UpConv) for m in fast.modules()) == n_up
    assert not any(type(m) is nn.Sequential and isinstance(m[0], nn.Upsample) for m in fast.modules())
    assert type(fast.mid_attn) is ChannelsLastSelfAttention and isinstance(fast.mid_attn, SelfAttention)
    sd = fast.state_dict()
    assert list(sd) == list(textbook.state_dict())                       # the same keys, in the same order
    assert {k: v.data_ptr() for k, v in sd.items()} == params_before     # the same tensors: nothing copied
    assert speed_up(fast) is fast and list(fast.state_dict()) == list(sd)  # idempotent
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 20, 49]), torch.tensor([2, 10, 7])
    style = torch.tensor([[0.3, -1.0], [float("nan")] * 2, [1.0, 0.5]]) if cfg.style_dim else None
    with torch.no_grad():
        torch.testing.assert_close(fast(x, t, y, style), textbook(x, t, y, style), rtol=1e-4, atol=1e-5)


def test_fast_form_describes_without_changing_the_model_it_is_given():
    from engine.unet import build_model

    from .conftest import TINY_MODEL
    textbook = trained_like(build_model(TINY_MODEL))
    copy = fast_form(textbook)
    assert copy is not textbook and isinstance(copy.upsample[0], UpConv)
    assert type(textbook.upsample[0]) is nn.Sequential                       # the original is untouched
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), textbook.state_dict().values()))
    already = speed_up(build_model(TINY_MODEL))
    assert fast_form(already) is already                                     # nothing to do: no copy


def test_speed_up_leaves_a_plain_cnn_as_it_is():
    from engine.unet import build_model

    from .conftest import TINY_MODEL
    cnn = build_model(TINY_MODEL.replace(arch="cnn", attention=False))
    before = [type(m) for m in cnn.modules()]
    assert [type(m) for m in speed_up(cnn).modules()] == before


@pytest.mark.parametrize("changes", [{}, {"patch_size": 2}, {"num_heads": 1}])
def test_channels_last_keeps_its_layout_and_the_numbers(changes):
    """On a CPU models run channels-last (to_device); every layer must keep that layout (a flip back to NCHW
    costs a copy and slow mixed-layout kernels) and compute the same values and gradients as NCHW."""
    from engine.unet import build_model

    from .conftest import TINY_MODEL
    cfg = TINY_MODEL.replace(attention=True, **changes)
    torch.manual_seed(0)
    nchw = build_model(cfg)
    for p in nchw.parameters():           # a trained-like network (zero-initialised layers hide differences)
        p.data.normal_(0, 0.1)
    nhwc = to_device(build_model(cfg), "cpu")
    nhwc.load_state_dict(nchw.state_dict())
    assert nhwc.mid1.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    flips = []

    def check(module, inputs):
        x = inputs[0]
        if x.dim() == 4 and x.shape[1] > 1 and not x.is_contiguous(memory_format=torch.channels_last):
            flips.append(type(module).__name__)
    for m in nhwc.modules():              # the stem reads the image (and its 2x2 patches) as given: NCHW
        if isinstance(m, (torch.nn.Conv2d, torch.nn.GroupNorm)) and m is not nhwc.stem:
            m.register_forward_pre_hook(check)
    x = torch.randn(4, 1, 28, 28)
    t, y = torch.tensor([3, 200, 500, 999]), torch.tensor([0, 4, 9, 10])
    a, b = nchw(x, t, y), nhwc(x, t, y)
    assert flips == []
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    ga = torch.autograd.grad(a.square().sum(), list(nchw.parameters()))
    gb = torch.autograd.grad(b.square().sum(), list(nhwc.parameters()))
    for g1, g2 in zip(ga, gb):
        torch.testing.assert_close(g2, g1, rtol=1e-3, atol=1e-4)


def test_the_textbook_attention_on_a_channels_last_input_gives_the_same_numbers_but_flips_the_layout():
    """Why accel has its own attention: the textbook one is right on any layout, but returns NCHW."""
    from engine.unet import SelfAttention

    attn = trained_like(SelfAttention(16, 4))
    x = torch.randn(2, 16, 7, 7).contiguous(memory_format=torch.channels_last)
    fast = ChannelsLastSelfAttention(attn).to(memory_format=torch.channels_last)
    out_fast, out_text = fast(x), attn(x)
    torch.testing.assert_close(out_fast, out_text, rtol=1e-5, atol=1e-6)
    assert out_fast.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_checkpoints_load_in_the_fast_form_and_match_the_textbook_model(name):
    """The shipped weights load unchanged (same state-dict keys as the file) and run accelerated by default;
    the textbook model with the same weights gives the same outputs on a fixed input."""
    from engine.checkpoints import load_checkpoint, read_tensors
    from engine.unet import build_model

    ck = load_checkpoint(SHIPPED / name)
    fast = ck.model
    assert any(isinstance(m, UpConv) for m in fast.modules())
    assert isinstance(fast.mid_attn, ChannelsLastSelfAttention)
    assert fast.mid1.conv1.weight.is_contiguous(memory_format=torch.channels_last)          # on a CPU
    stored = {k[len("ema."):]: v for k, v in read_tensors(SHIPPED / name).items() if k.startswith("ema.")}
    textbook = build_model(ck.model_config).eval()
    textbook.load_state_dict(stored)                      # strict: the textbook model's keys are the file's
    assert list(textbook.state_dict()) == list(fast.state_dict()) and set(stored) == set(fast.state_dict())
    for k, v in fast.state_dict().items():
        assert torch.equal(v, stored[k]), k
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 28, 28, generator=g)
    t, y = torch.tensor([0, 100, 400, 700, 900, 999]), torch.tensor([0, 3, 5, 7, 9, 10])
    with torch.no_grad():
        a, b = textbook(x, t, y), fast(x, t, y)
    assert a.abs().max() > 0.5                            # a trained network, not zeros
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_a_new_training_run_trains_the_fast_form(tmp_path):
    run = _run(tmp_path, "fast-form")
    assert any(isinstance(m, UpConv) for m in run.model.modules())
    assert run.model.mid1.conv1.weight.is_contiguous(memory_format=torch.channels_last)
