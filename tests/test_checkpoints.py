import json
import os
import pickle

import pytest
import torch

from engine import checkpoints as ck
from engine.schedule import NoiseSchedule
from engine.sampling import sample
from engine.unet import build_model

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


@pytest.fixture
def saved(tmp_path, tiny_model):
    path = ck.save_checkpoint(tmp_path / "ckpt", model=tiny_model, ema_model=tiny_model, model_config=TINY_MODEL,
                              schedule_config=TINY_SCHEDULE, train_config=TINY_TRAIN, recommended=TINY_SAMPLE,
                              step=7, meta={"command": "test"})
    return path


def test_save_load_gives_identical_samples(saved, tiny_model):
    loaded = ck.load_checkpoint(saved)
    assert loaded.step == 7 and loaded.recommended == TINY_SAMPLE and loaded.model_config == TINY_MODEL
    s = NoiseSchedule(TINY_SCHEDULE)
    y = torch.tensor([0, 5])
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    # loaded, the model runs in accel's fast form (UpConv; channels-last on the CPU); in the same form, the
    # same samples
    from engine.accel import to_device
    to_device(tiny_model, "cpu")
    assert loaded.model.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(sample(tiny_model, s, y, TINY_SAMPLE, seeds=[1, 2]), sample(loaded.model, s, y, TINY_SAMPLE, seeds=[1, 2]))
    assert len(loaded.sha256) == 64
    assert oct(os.stat(saved).st_mode & 0o777) == "0o755"


def test_no_temp_folders_left_and_overwrite_refused(saved, tiny_model):
    assert [p.name for p in saved.parent.iterdir()] == ["ckpt"]
    with pytest.raises(ck.CheckpointError, match="already exists"):
        ck.save_checkpoint(saved, model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=None)


def test_overwrite_keeps_sidecars_and_recovers_after_crash(saved, tiny_model):
    (saved / "metrics.jsonl").write_text('{"step": 1}\n')
    ck.save_checkpoint(saved, model=tiny_model, ema_model=None, model_config=TINY_MODEL, schedule_config=TINY_SCHEDULE,
                       train_config=TINY_TRAIN, step=9, overwrite=True, keep_sidecars=True)
    assert (saved / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert ck.load_checkpoint(saved).step == 9
    # simulate a crash between "move old aside" and "move new in"
    os.rename(saved, saved.with_name(".ckpt.old-123"))
    assert ck.load_checkpoint(saved).step == 9


def _corrupt(path, how):
    w = path / ck.WEIGHTS
    if how == "empty":
        w.write_bytes(b"")
    elif how == "truncated":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif how == "flipped":
        data = bytearray(w.read_bytes())
        data[-10] ^= 0xFF
        w.write_bytes(bytes(data))
    elif how == "pickle":
        w.write_bytes(pickle.dumps({"x": 1}))
    elif how == "torch.save":
        torch.save({"x": torch.zeros(1)}, w)
    elif how == "bad json":
        (path / ck.CONFIG).write_text("{not json")
    elif how == "no meta":
        (path / ck.META).unlink()


@pytest.mark.parametrize("how, message", [
    ("empty", "is empty"), ("truncated", "truncated"), ("flipped", "sha256"), ("pickle", "never unpickles"),
    ("torch.save", "never unpickles"), ("bad json", "not valid JSON"), ("no meta", "meta.json is missing"),
])
def test_corrupt_checkpoints_give_clear_errors(saved, how, message):
    _corrupt(saved, how)
    with pytest.raises(ck.CheckpointError, match=message):
        ck.load_checkpoint(saved)


def test_config_that_does_not_match_weights(saved):
    cfg = json.loads((saved / ck.CONFIG).read_text())
    cfg["model"]["base_channels"] = 16
    (saved / ck.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ck.CheckpointError, match="does not match its weights"):
        ck.load_checkpoint(saved)


def test_invalid_config_values(saved):
    cfg = json.loads((saved / ck.CONFIG).read_text())
    cfg["model"]["base_channels"] = -3
    (saved / ck.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ck.CheckpointError, match="config.json is invalid"):
        ck.load_checkpoint(saved)


def test_missing_folder_and_listing(tmp_path, saved):
    with pytest.raises(ck.CheckpointError, match="no checkpoint folder"):
        ck.load_checkpoint(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / ck.CONFIG).write_text("[")
    listing = {e["name"]: e for e in ck.list_checkpoints(tmp_path)}
    assert listing["ckpt"]["step"] == 7 and "error" in listing["junk"]


def test_optimizer_state_round_trip(tmp_path):
    model = build_model(TINY_MODEL)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1])).pow(2).mean().backward()
    opt.step()
    tensors, groups = ck.optimizer_to_tensors(opt)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ck.optimizer_from_tensors(opt2, tensors, json.loads(json.dumps(groups)))
    a, b = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)


def test_safetensors_whose_header_length_starts_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    """Seen for real: a header of 0x...80 bytes begins the file with the pickle protocol byte."""
    from safetensors.torch import save_file

    for pad in range(0, 300):
        path = tmp_path / "w.safetensors"
        save_file({"x": torch.zeros(3)}, str(path), metadata={"pad": "p" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("could not build the case")
    assert torch.equal(ck._load_safetensors(path, None)["x"], torch.zeros(3))
