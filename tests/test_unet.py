import pytest
import torch

from engine.config import ModelConfig
from engine.summary import format_summary, model_summary, total_flops
from engine.unet import UpConv, build_model, count_parameters, sinusoidal_embedding

from .conftest import TINY_MODEL


@pytest.mark.parametrize("changes", [
    {}, {"skip_connections": False}, {"time_embedding": False}, {"class_embedding": False},
    {"arch": "cnn", "attention": False}, {"style_dim": 2}, {"num_res_blocks": 2}, {"channel_mults": (1, 2, 2)},
    {"patch_size": 2}, {"patch_size": 2, "skip_connections": False, "style_dim": 2},
])
def test_every_variant_maps_images_to_same_shape(changes):
    model = build_model(TINY_MODEL.replace(**changes))
    x = torch.randn(3, 1, 28, 28)
    style = torch.tensor([[0.5, -0.2], [float("nan"), float("nan")], [0.0, 1.0]]) if changes.get("style_dim") else None
    out = model(x, torch.tensor([0, 10, 49]), torch.tensor([1, 10, 3]), style)
    assert out.shape == x.shape


def test_zero_initialised_head_predicts_zero_noise():
    model = build_model(TINY_MODEL)
    assert torch.count_nonzero(model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1]))) == 0


def test_ablations_change_the_network():
    base = build_model(TINY_MODEL)
    no_skip = build_model(TINY_MODEL.replace(skip_connections=False))
    no_time = build_model(TINY_MODEL.replace(time_embedding=False))
    assert count_parameters(no_skip) < count_parameters(base)
    assert no_time.cond.time_mlp is None and base.cond.time_mlp is not None


def test_time_and_class_inputs_matter(tiny_model):
    x = torch.randn(1, 1, 28, 28)
    a = tiny_model(x, torch.tensor([5]), torch.tensor([3]))
    assert not torch.allclose(a, tiny_model(x, torch.tensor([45]), torch.tensor([3])))
    assert not torch.allclose(a, tiny_model(x, torch.tensor([5]), torch.tensor([8])))


def test_sinusoidal_embedding_is_distinct_per_t():
    e = sinusoidal_embedding(torch.arange(100), 32)
    assert e.shape == (100, 32)
    d = torch.cdist(e, e) + torch.eye(100) * 10
    assert d.min() > 1e-3


def test_summary_lists_levels_with_shapes_and_flops():
    model = build_model(ModelConfig())
    rows = model_summary(model)
    names = [r.name for r in rows]
    assert names[0] == "stem" and names[-1] == "head" and "mid_attn" in names
    down = {r.name: r for r in rows}
    assert down["downsample.0"].out_shape == (1, 32, 14, 14)
    assert down["up.2.0"].in_shape == (1, 64, 28, 28)         # 32 upsampled + 32 from the skip
    assert sum(r.params for r in rows) <= count_parameters(model)
    assert 0.8 * total_flops(model) < sum(r.flops for r in rows) <= total_flops(model)
    assert "total" in format_summary(rows)


@pytest.mark.parametrize("size", [(7, 7), (5, 8)])
def test_upconv_equals_upsample_then_conv_in_values_and_gradients(size):
    torch.manual_seed(0)
    up = UpConv(6, 4)
    x = torch.randn(2, 6, *size, requires_grad=True)
    reference = up[1](torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))  # the textbook form
    fast = up(x)
    assert fast.shape == reference.shape == (2, 4, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    params = [x, up[1].weight, up[1].bias]
    for g_fast, g_ref in zip(torch.autograd.grad(fast.square().sum(), params),
                             torch.autograd.grad(reference.square().sum(), params)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-4)
    assert list(up.state_dict()) == ["1.weight", "1.bias"]     # same keys as nn.Sequential(Upsample, Conv2d)


def test_patch_stem_removes_the_full_resolution_level_and_sees_every_pixel():
    """The `fast` design: a 2x2 pixel-unshuffle stem, so no layer runs at 28x28, at about a third of the FLOPs."""
    from engine.presets import get_preset

    fast, default = get_preset("fast").model, get_preset("default").model
    assert fast.patch_size == 2
    rows = model_summary(build_model(fast))
    assert max(r.out_shape[-1] for r in rows) == 14 and rows[0].in_shape == (1, 4, 14, 14)
    assert total_flops(build_model(fast)) < 0.4 * total_flops(build_model(default))

    torch.manual_seed(0)
    model = build_model(TINY_MODEL.replace(patch_size=2)).eval()
    for p in model.parameters():          # a trained-like network (the zero-initialised head outputs nothing)
        p.data.normal_(0, 0.1)
    x = torch.randn(1, 1, 28, 28)
    t, y = torch.tensor([10]), torch.tensor([3])
    base = model(x, t, y)
    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)]:   # each of one patch's four pixels reaches the output
        x2 = x.clone()
        x2[0, 0, 10 + i, 10 + j] += 1.0
        diff = (model(x2, t, y) - base).abs()[0, 0]
        assert diff[10 + i, 10 + j] > 1e-3 * diff.max()


@pytest.mark.parametrize("changes", [{}, {"patch_size": 2}, {"num_heads": 1}])
def test_channels_last_keeps_its_layout_and_the_numbers(changes):
    """On a CPU models run channels-last (to_device); every layer must keep that layout (a flip back to NCHW
    costs a copy and slow mixed-layout kernels) and compute the same values and gradients as NCHW."""
    from engine.unet import to_device

    cfg = TINY_MODEL.replace(attention=True, **changes)
    torch.manual_seed(0)
    nchw = build_model(cfg)
    for p in nchw.parameters():           # a trained-like network (zero-initialised layers hide differences)
        p.data.normal_(0, 0.1)
    nhwc = to_device(build_model(cfg), "cpu")
    nhwc.load_state_dict(nchw.state_dict())
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
