"""engine/distill.py and `python -m engine distill`: progressive distillation of the guided DDIM sampler."""
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from engine import distill as D
from engine.checkpoints import load_checkpoint, save_checkpoint
from engine.cli import main
from engine.config import ConfigError, SampleConfig, ScheduleConfig
from engine.sampling import sample, sample_progressive
from engine.schedule import NoiseSchedule

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN

GUIDED = SampleConfig(sampler="ddim", steps=8, guidance=1.0, guidance_interval=(0.5, 1.0))   # guided at t/T >= 0.5


@pytest.fixture
def schedule():
    return NoiseSchedule(TINY_SCHEDULE)


@pytest.fixture
def digits():
    from engine.data import load

    held = load("mnist-5k")[1]
    idx = torch.cat([torch.nonzero(held.labels == c).view(-1)[:2] for c in range(10)])
    return held.images[idx], held.labels[idx]


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """The tiny U-Net trained 100 steps on T = 50 (~3 s): a teacher whose eps means something (a randomly
    perturbed network's eps at t = T-1 is so far off that fitting it there is all a round would do)."""
    from engine.training.run import TrainingRun

    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=100, lr=5e-3, warmup_steps=5),
                             TINY_SAMPLE, tmp_path_factory.mktemp("tiny-teacher"))
    for _ in range(100):
        run.step()
    return run.ema.model.eval()


@pytest.fixture
def teacher_path(tmp_path, tiny_model):
    return save_checkpoint(tmp_path / "teacher", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=None, recommended=TINY_SAMPLE)


def _sampler_states(model, schedule, labels, config, z, timesteps, **kw):
    """The project's sampler from state z through `timesteps` (then to -1): the state after each step."""
    return [s.x_prev for s in sample_progressive(model, schedule, labels, config, x_T=z, timesteps=timesteps, **kw)]


def test_the_rounds_use_the_samplers_own_grids():
    s = NoiseSchedule(ScheduleConfig(T=1000))
    g = D.round_grid(s, 16)
    assert g.t.tolist() == s.timesteps(16) and g.t.tolist()[0] == 999
    assert g.mid.tolist() == s.timesteps(32)[1::2]
    assert g.end.tolist() == s.timesteps(16)[1:] + [-1]
    assert D.round_grid(s, 4).t.tolist() == [999, 749, 499, 249]
    assert D.DistillSettings(start_steps=32, end_steps=4).round_steps() == [(32, 16), (16, 8), (8, 4)]
    with pytest.raises(ValueError, match="needs T >= 64"):
        D.round_grid(NoiseSchedule(TINY_SCHEDULE), 32)


def test_the_batched_teacher_is_the_samplers_guided_ddim(schedule, tiny_model, digits):
    """Two teacher steps, one timestep per image, equal the project's sampler run on each timestep's images."""
    images, labels = digits
    grid = D.round_grid(schedule, 4)
    i = torch.arange(len(labels)) % grid.steps
    t, mid, end = grid.t[i], grid.mid[i], grid.end[i]
    z = schedule.q_sample(images, t, torch.randn(images.shape, generator=torch.Generator().manual_seed(0)))
    eps_fn = D.guided_eps_fn(tiny_model, GUIDED.guidance, GUIDED.guidance_interval, schedule.T)
    two = D.teacher_two_steps(schedule, eps_fn, z, labels, t, mid, end, clip=True)
    for k in range(grid.steps):
        m = i == k
        ts = [int(grid.t[k]), int(grid.mid[k])] + ([int(grid.end[k])] if int(grid.end[k]) >= 0 else [])
        states = _sampler_states(tiny_model, schedule, labels[m], GUIDED, z[m], ts)
        # float32: at t = T-1 the sampler divides by alpha = 1e-3, which turns the rounding of a different batch
        # composition (1e-7) into up to 1e-4 on a pixel; typical pixels agree to 1e-6
        torch.testing.assert_close(two[m], states[1], atol=2e-4, rtol=0)
        assert float((two[m] - states[1]).abs().mean()) < 1e-6


def test_one_ddim_step_with_the_target_lands_on_the_teachers_two_steps(schedule, tiny_model, digits):
    """Salimans & Ho's eq. 8: one step of the project's DDIM sampler from z_t, with the noise prediction that
    the target x~ implies, lands on the teacher's two-step state (to 1e-5), at every grid point, the first (t = T-1)
    and the last (onto the clean image) included. The sums run in float64 (the maths, not float32 rounding)."""
    images, labels = digits
    grid = D.round_grid(schedule, 4)
    eps_fn = D.guided_eps_fn(tiny_model, GUIDED.guidance, GUIDED.guidance_interval, schedule.T)
    g = torch.Generator().manual_seed(1)
    for k in range(grid.steps):
        t, mid, end = (v[k].repeat(len(labels)) for v in (grid.t, grid.mid, grid.end))
        z = schedule.q_sample(images, t, torch.randn(images.shape, generator=g))
        z_end = D.teacher_two_steps(schedule, eps_fn, z, labels, t, mid, end, clip=True).double()
        z64 = z.double()
        target = D.distillation_target(schedule, z64, t, end, z_end)
        assert float(target.abs().max()) <= 1 + 1e-4          # a mix of the two clipped estimates (float32 teacher)
        eps = schedule.predict_eps_from_x0(z64, int(t[0]), target)
        ts = [int(t[0])] + ([int(end[0])] if int(end[0]) >= 0 else [])
        one = _sampler_states(tiny_model, schedule, labels, GUIDED.replace(guidance=0.0), z64, ts,
                              eps_fn=lambda x, tt: eps)[0]
        assert float((one - z_end).abs().max()) < 1e-5, f"grid point {int(t[0])} -> {int(end[0])}"
        # and it is not the identity: a target one grid point off misses by far
        wrong = D.distillation_target(schedule, z64, t, mid, z_end)
        off = _sampler_states(tiny_model, schedule, labels, GUIDED.replace(guidance=0.0), z64, ts,
                              eps_fn=lambda x, tt: schedule.predict_eps_from_x0(z64, int(t[0]), wrong))[0]
        assert float((off - z_end).abs().max()) > 1e-3


def test_a_round_brings_the_student_closer_to_the_teachers_two_steps(schedule, trained_tiny, digits):
    """Round 1 (the guided 8-step sampler -> 4 steps) on held-out states: the student's one step lands closer to
    the teacher's two below t = T-1, and at t = T-1 its clipped estimate has the sign of x~ more often."""
    from engine.data import load

    tiny_model = trained_tiny
    train = load("mnist-5k")[0]
    grid = D.round_grid(schedule, 4)
    eps_fn = D.guided_eps_fn(tiny_model, GUIDED.guidance, GUIDED.guidance_interval, schedule.T)
    batch = D.fixed_batch(schedule, grid, *digits)
    settings = D.DistillSettings(start_steps=8, end_steps=4, iterations=40, batch_size=16, lr=5e-4, warmup=2,
                                 ema_decay=0.0)
    student = copy.deepcopy(tiny_model)
    before = D.discrepancy(schedule, student, eps_fn, batch, clip=True)
    result = D.distill_round(schedule, eps_fn, student, grid, settings, train.images, train.labels, measure=batch)
    after = D.discrepancy(schedule, result.student, eps_fn, batch, clip=True)
    assert result.completed and result.record["iterations"] == 40
    assert result.record["discrepancy_before"] == pytest.approx(before["steps"], rel=1e-4, abs=1e-6)
    assert after["steps"] < 0.75 * before["steps"], (before, after)       # measured: 0.55x
    assert after["first_step_sign"] > before["first_step_sign"], (before, after)
    # deterministic given the seed; stop() ends a round early with its student so far
    short = dataclasses.replace(settings, iterations=3)
    runs = [D.distill_round(schedule, eps_fn, copy.deepcopy(tiny_model), grid, short, train.images,
                            train.labels).student for _ in range(2)]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(a, b)
    calls = []
    stopped = D.distill_round(schedule, eps_fn, copy.deepcopy(tiny_model), grid, settings, train.images,
                              train.labels, stop=lambda: len(calls) >= 2, progress=calls.append)
    assert not stopped.completed and stopped.record["iterations"] == 2 == len(calls)


def test_distill_writes_a_checkpoint_that_sample_and_export_accept(tmp_path, teacher_path, capsys):
    out = tmp_path / "runs" / "student"
    rc = main(["distill", "--teacher", str(teacher_path), "--out", str(out), "--start-steps", "8", "--end-steps", "2",
               "--iterations", "3", "--batch-size", "8", "--no-judge", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "done: 2 rounds" in printed
    for name in ("weights.safetensors", "config.json", "meta.json", "metrics.jsonl", "snapshots"):
        assert (out / name).exists(), name
    ck = load_checkpoint(out)
    rec = ck.recommended
    assert (rec.sampler, rec.steps, rec.guidance, rec.eta, rec.clip_x0) == ("ddim", 2, 0.0, 0.0, True)
    d = ck.meta["distillation"]
    teacher = load_checkpoint(teacher_path)
    assert d["teacher_sha256"] == teacher.sha256 and d["complete"] is True
    assert [(r["teacher_steps"], r["student_steps"], r["iterations"]) for r in d["rounds"]] == [(8, 4, 3), (4, 2, 3)]
    assert all(r["seconds"] > 0 for r in d["rounds"])
    assert d["teacher_sampling"]["guidance"] == TINY_SAMPLE.guidance and d["settings"]["batch_size"] == 8
    assert ck.meta["command"].startswith("python -m engine") and ck.step == 6
    assert ck.train_config.steps == 6 and ck.train_config.batch_size == 8
    middle = load_checkpoint(D.round_folder(out, 4))                     # the 4-step round's student, kept
    assert middle.recommended.steps == 4 and middle.meta["distillation"]["complete"] is False
    # `sample` with the recorded recommendation: DDIM-2, unguided, exactly the student's own sampler
    npz = tmp_path / "s.npz"
    assert main(["sample", "--checkpoint", str(out), "--per-class", "1", "--out", str(npz), "--device", "cpu"]) == 0
    assert "(ddim, 2 steps, guidance 0.0)" in capsys.readouterr().out
    mine = sample(ck.model, NoiseSchedule(ck.schedule_config), torch.arange(10), rec, seeds=list(range(10)))
    from engine.sampling import to_uint8

    assert np.array_equal(np.load(npz)["images"], to_uint8(mine).numpy())
    # `export` keeps the distillation record; the runs table reads the folder
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "shipped")]) == 0
    assert load_checkpoint(tmp_path / "shipped").meta["distillation"]["rounds"] == d["rounds"]
    from engine.training.runs import list_runs

    rows = {r["name"]: r for r in list_runs(out.parent)}
    assert "error" not in rows["student"] and rows["student"]["step"] == 6 and rows["student"]["total"] == 6
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "discrepancy_after" in r] == [3, 6]


@pytest.mark.parametrize("args, message", [
    (["--teacher", "{tmp}/missing"], "no such checkpoint folder"),
    (["--start-steps", "4", "--end-steps", "8"], "must be fewer than --start-steps 4"),
    (["--start-steps", "32", "--end-steps", "5"], "not a power of two"),
    (["--batch-size", "0"], "--batch-size must be between 1 and 4096"),
    (["--batch-size", "100000"], "--batch-size must be between 1 and 4096"),
    (["--iterations", "0"], "--iterations (per round) must be between"),
    (["--lr", "5"], "--lr must be between"),
    (["--threads", "0"], "--threads must be between 1 and 256"),
    (["--start-steps", "64", "--end-steps", "8"], "more than the teacher's T = 50"),
])
def test_bad_input_is_a_message_not_a_traceback(tmp_path, teacher_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["distill", "--teacher", str(teacher_path), "--out", str(tmp_path / "out"), "--start-steps", "8",
            "--end-steps", "2", "--iterations", "1", "--batch-size", "4", "--no-judge", "--device", "cpu"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out" / "weights.safetensors").exists()


def test_an_existing_out_is_refused_without_force(tmp_path, teacher_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    base = ["distill", "--teacher", str(teacher_path), "--out", str(out), "--start-steps", "4", "--end-steps", "2",
            "--iterations", "1", "--batch-size", "4", "--no-judge", "--device", "cpu"]
    assert main(base) == 2 and "already exists; pass --force" in capsys.readouterr().err
    assert main(base + ["--force"]) == 2 and "will not delete" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert main(base[:4] + [str(teacher_path)] + base[5:]) == 2                    # --out is the teacher
    assert "teacher's folder" in capsys.readouterr().err


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="fewer than"):
        D.DistillSettings(start_steps=4, end_steps=4)
    assert D.DistillSettings(start_steps=32, end_steps=2).rounds == 4
