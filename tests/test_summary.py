"""engine/summary.py: per-block shapes, parameters and FLOPs, for the textbook and the fast form alike."""
from engine.accel import speed_up
from engine.config import ModelConfig
from engine.summary import format_summary, model_summary, total_flops
from engine.unet import build_model, count_parameters

from .conftest import TINY_MODEL


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


def test_a_3x3_conv_costs_two_flops_per_multiply_add():
    """The stem of the default model: 28 x 28 outputs x 9 taps x 1 input x 32 output channels, x 2."""
    rows = {r.name: r for r in model_summary(build_model(ModelConfig()))}
    assert rows["stem"].flops == 2 * 28 * 28 * 9 * 1 * 32
    assert rows["stem"].params == 9 * 32 + 32


def test_both_forms_have_the_same_blocks_and_the_fast_up_convs_cost_what_the_sub_pixel_maths_says():
    cfg = ModelConfig()
    text_rows = model_summary(build_model(cfg), as_run=False)
    fast_rows = model_summary(speed_up(build_model(cfg)))
    assert [(r.name, r.in_shape, r.out_shape, r.params) for r in text_rows] == \
           [(r.name, r.in_shape, r.out_shape, r.params) for r in fast_rows]
    kinds = {r.name: r.kind for r in fast_rows}
    assert kinds["mid_attn"] == "SelfAttention" and kinds["upsample.0"] == "UpConv"
    assert {r.name: r.kind for r in text_rows}["upsample.0"] == "Sequential"
    for t, f in zip(text_rows, fast_rows):
        if t.name.startswith("upsample."):
            _, c_in, h, w = t.in_shape
            c_out = t.out_shape[1]
            assert t.flops == 2 * (2 * h) * (2 * w) * 9 * c_in * c_out          # 3x3 conv at the high resolution
            assert f.flops == 2 * (h + 1) * (w + 1) * 4 * c_in * (4 * c_out)    # four 2x2 convs at the low one
        else:
            assert t.flops == f.flops, t.name
    assert total_flops(speed_up(build_model(cfg))) < total_flops(build_model(cfg), as_run=False)


def test_a_model_is_described_as_it_runs_without_being_changed():
    """The runs table and the CLI summarise a freshly built (textbook) model: the figures are those of the form
    that trains and samples (212 MFLOP for ModelConfig(), 232 as written: the README's figures), and the model
    given stays textbook."""
    model = build_model(ModelConfig())
    before = [type(m) for m in model.modules()]
    assert round(total_flops(model) / 1e6) == 212 and round(total_flops(model, as_run=False) / 1e6) == 232
    assert total_flops(model) == total_flops(speed_up(build_model(ModelConfig())))
    assert {r.name: r.kind for r in model_summary(model)}["upsample.1"] == "UpConv"
    assert [type(m) for m in model.modules()] == before


def test_summary_works_on_a_loaded_channels_last_model_and_a_plain_cnn():
    from engine.accel import to_device

    model = to_device(build_model(TINY_MODEL), "cpu")
    rows = model_summary(model, batch=2)
    assert rows[0].in_shape == (2, 1, 28, 28) and rows[-1].out_shape == (2, 1, 28, 28)
    cnn_rows = model_summary(build_model(TINY_MODEL.replace(arch="cnn", attention=False)))
    assert all(r.out_shape[-1] == 28 for r in cnn_rows) and all(r.kind in ("Conv2d", "ResBlock", "Sequential")
                                                                 for r in cnn_rows)
    per_image = [r.flops for r in model_summary(model, batch=1)]
    assert [r.flops for r in rows] == per_image                  # FLOPs are per image, whatever the batch
