"""engine/unet.py: the textbook U-Net (the fast form of accel.py is tested in test_accel.py)."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from engine.config import ModelConfig
from engine.unet import SelfAttention, build_model, count_parameters, sinusoidal_embedding

from .conftest import TINY_MODEL, trained_like




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


def test_the_model_file_runs_alone_with_torch_only():
    """A learner can read (and run) unet.py on its own: loaded outside the engine package, with no project
    import available, it still builds and runs a model."""
    path = Path(__file__).resolve().parent.parent / "engine" / "unet.py"
    spec = importlib.util.spec_from_file_location("standalone_unet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)                       # a relative import at run time would fail here
    model = module.build_model(TINY_MODEL)
    assert model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 10])).shape == (2, 1, 28, 28)


def test_the_textbook_model_has_plain_upsample_then_conv_and_plain_attention():
    model = build_model(TINY_MODEL)
    ups = [m for m in model.upsample if not isinstance(m, nn.Identity)]
    assert ups and all(type(m) is nn.Sequential and isinstance(m[0], nn.Upsample) and isinstance(m[1], nn.Conv2d)
                       for m in ups)
    assert type(model.mid_attn) is SelfAttention
    assert model.down[0][0].conv1.weight.is_contiguous()          # NCHW: the memory layout is accel.py's business


def test_a_head_count_that_does_not_divide_the_channels_is_an_error_not_a_silent_single_head():
    with pytest.raises(ValueError, match=r"num_heads=3 must divide the 16 channels"):
        build_model(TINY_MODEL.replace(num_heads=3))            # lowest level: 8 x 2 = 16 channels
    with pytest.raises(ValueError, match="cannot be split into 3 heads"):
        SelfAttention(16, 3)
    build_model(TINY_MODEL.replace(num_heads=3, attention=False))   # no attention: the head count is unused
    assert SelfAttention(16, 4).num_heads == 4


def test_attention_heads_attend_separately():
    """With 2 heads, each head's output depends only on its own channels' queries and keys: zeroing the key
    projection of head 1 changes head 1's output only (a single-head fallback would mix them)."""
    torch.manual_seed(0)
    attn = trained_like(SelfAttention(8, 2))
    with torch.no_grad():
        attn.qkv.weight.mul_(30)                            # peaked attention, far from uniform
    x = torch.randn(1, 8, 7, 7)
    captured = {}
    attn.proj.register_forward_hook(lambda m, args, out: captured.__setitem__("h", args[0].clone()))
    attn(x)
    before = captured["h"]
    with torch.no_grad():                                   # keys of head 1: qkv output channels C + 4 .. C + 7
        attn.qkv.weight[8 + 4:8 + 8] = 0
        attn.qkv.bias[8 + 4:8 + 8] = 0
    attn(x)
    after = captured["h"]
    torch.testing.assert_close(after[:, :4], before[:, :4])
    assert (after[:, 4:] - before[:, 4:]).abs().max() > 1e-3


def test_zero_initialised_head_predicts_zero_noise():
    model = build_model(TINY_MODEL)
    assert torch.count_nonzero(model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1]))) == 0


def test_ablations_change_the_network():
    base = build_model(TINY_MODEL)
    no_skip = build_model(TINY_MODEL.replace(skip_connections=False))
    no_time = build_model(TINY_MODEL.replace(time_embedding=False))
    no_class = build_model(TINY_MODEL.replace(class_embedding=False))
    assert count_parameters(no_skip) < count_parameters(base)
    assert no_time.cond.time_mlp is None and base.cond.time_mlp is not None
    assert no_class.cond.class_emb is None


def test_time_and_class_inputs_matter(tiny_model):
    x = torch.randn(1, 1, 28, 28)
    a = tiny_model(x, torch.tensor([5]), torch.tensor([3]))
    assert not torch.allclose(a, tiny_model(x, torch.tensor([45]), torch.tensor([3])))
    assert not torch.allclose(a, tiny_model(x, torch.tensor([5]), torch.tensor([8])))


def test_the_null_class_is_its_own_learned_row_and_no_label_means_null(tiny_model):
    emb = tiny_model.cond.class_emb
    assert emb.num_embeddings == TINY_MODEL.num_classes + 1 == TINY_MODEL.null_class + 1
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([7, 30])
    null = torch.full((2,), TINY_MODEL.null_class)
    torch.testing.assert_close(tiny_model(x, t, None), tiny_model(x, t, null))
    assert not torch.allclose(tiny_model(x, t, null), tiny_model(x, t, torch.tensor([0, 0])))


def test_soft_labels_mix_the_class_embeddings(tiny_model):
    """A one-hot row over the 11 embeddings is that class (interpolation mixes rows the same way)."""
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([20])
    onehot = torch.zeros(1, 11)
    onehot[0, 3] = 1
    torch.testing.assert_close(tiny_model(x, t, onehot), tiny_model(x, t, torch.tensor([3])))


def test_style_rows_of_nan_mean_no_style():
    torch.manual_seed(0)
    model = trained_like(build_model(TINY_MODEL.replace(style_dim=2)))
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([5, 5]), torch.tensor([1, 1])
    nan = torch.full((2, 2), float("nan"))
    torch.testing.assert_close(model(x, t, y, nan), model(x, t, y, None))
    assert not torch.allclose(model(x, t, y, torch.tensor([[1.0, 0.0], [1.0, 0.0]])), model(x, t, y, None))


def test_sinusoidal_embedding_is_distinct_per_t_and_follows_the_formula():
    e = sinusoidal_embedding(torch.arange(100), 32)
    assert e.shape == (100, 32)
    d = torch.cdist(e, e) + torch.eye(100) * 10
    assert d.min() > 1e-3
    # t = 0: cos 0 = 1 in the first half, sin 0 = 0 in the second; feature 1 of t = 7 is cos(7 * 10000^(-1/16))
    torch.testing.assert_close(e[0], torch.cat([torch.ones(16), torch.zeros(16)]))
    assert abs(float(e[7, 1]) - math.cos(7 * 10000 ** (-1 / 16))) < 1e-5


def test_patch_stem_removes_the_full_resolution_level_and_sees_every_pixel():
    """The `fast` design: a 2x2 pixel-unshuffle stem, so no layer runs at 28x28, at about a third of the FLOPs."""
    from engine.presets import get_preset
    from engine.summary import model_summary, total_flops

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


def test_the_default_model_size_is_what_the_readme_says():
    assert 0.80e6 < count_parameters(build_model(ModelConfig())) < 0.84e6     # "0.82 M params"
