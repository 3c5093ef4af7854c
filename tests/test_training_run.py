"""engine/training/run.py: a run is made by factories, resumes exactly, and how often it checkpoints never
changes its numbers."""
import pytest
import torch

from engine.checkpoints import load_checkpoint
from engine.training.run import TrainingRun, init_model, step_seed
from engine.training.runs import read_metrics
from engine.unet import build_model

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


def _weights(run):
    """Every number the run's future depends on: weights, EMA weights, optimiser moments."""
    tensors = [p.detach().clone() for p in run.model.parameters()]
    tensors += [p.detach().clone() for p in run.ema.model.parameters()]
    for group in run.optimizer.param_groups:                       # parameter order, not the state dict's
        for p in group["params"]:
            state = run.optimizer.state[p]
            tensors += [state[k].clone() for k in sorted(state) if torch.is_tensor(state[k])]
    return tensors


def _identical(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_constructor_only_stores_configuration(tmp_path):
    before = torch.get_rng_state()
    run = TrainingRun(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN, TINY_SAMPLE, tmp_path / "r", "cpu", "cmd")
    assert torch.equal(torch.get_rng_state(), before)             # no global seeding
    assert not (tmp_path / "r").exists()                           # no I/O
    assert run.model is None and run.batches is None and run.step_count == 0
    assert run.train_config == TINY_TRAIN and run.command == "cmd" and (run.rank, run.world_size) == (0, 1)
    with pytest.raises(RuntimeError, match="TrainingRun.create"):
        run.step()


def test_create_builds_the_run_without_touching_the_global_rng(tmp_path):
    before = torch.get_rng_state()
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN, TINY_SAMPLE, tmp_path / "r")
    assert torch.equal(torch.get_rng_state(), before)
    assert not (tmp_path / "r").exists()                           # nothing written before the first save
    torch.manual_seed(TINY_TRAIN.seed)
    reference = build_model(TINY_MODEL)                            # what `torch.manual_seed(seed)` would give
    assert all(torch.equal(p, q) for p, q in zip(run.model.parameters(), reference.parameters()))
    assert _identical([p.detach() for p in run.ema.model.parameters()], [p.detach() for p in run.model.parameters()])


def test_init_model_depends_on_its_seed_alone():
    torch.manual_seed(123)
    a = init_model(TINY_MODEL, 5)
    torch.manual_seed(456)
    b = init_model(TINY_MODEL, 5)
    c = init_model(TINY_MODEL, 6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_step_seeds_are_unrelated_for_neighbouring_seeds_steps_and_ranks():
    seeds = {step_seed(s, r, k) for s in range(3) for r in range(2) for k in range(50)}
    assert len(seeds) == 3 * 2 * 50                                # seed 0 step 1 is not seed 1 step 0
    assert step_seed(0, 0, 7) == step_seed(0, 0, 7)


def test_resume_continues_with_identical_batches_noise_and_weights(tmp_path):
    cfg = TINY_TRAIN.replace(steps=6, augment=True)
    straight = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, cfg, TINY_SAMPLE, tmp_path / "straight")
    losses = [straight.step().loss for _ in range(6)]

    out = tmp_path / "stopped"
    first = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, cfg, TINY_SAMPLE, out)
    for _ in range(3):
        r = first.step()
        first.log({"step": first.step_count, "loss": r.loss})
    first.save()
    first.log({"step": 4, "loss": 0.0})                            # logged after the checkpoint: dropped on resume
    resumed = TrainingRun.resume(out, command="again")
    assert resumed.step_count == 3 and resumed.resume_commands == ["again"]
    again = [resumed.step().loss for _ in range(3)]
    assert again == losses[3:]                                     # bit-identical, not merely close
    assert _identical(_weights(resumed), _weights(straight))
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize("model_config, train_config", [
    (TINY_MODEL, TINY_TRAIN),
    (TINY_MODEL.replace(dropout=0.2), TINY_TRAIN.replace(augment=True)),      # every random draw of a step
], ids=["plain", "augment+dropout"])
def test_checkpoint_frequency_never_changes_the_numbers(tmp_path, model_config, train_config):
    often = TrainingRun.create(model_config, TINY_SCHEDULE,
                               train_config.replace(steps=5, checkpoint_every=1, sample_every=1, log_every=1),
                               TINY_SAMPLE, tmp_path / "often")
    rarely = TrainingRun.create(model_config, TINY_SCHEDULE,
                                train_config.replace(steps=5, checkpoint_every=1000, sample_every=1000,
                                                     log_every=1000),
                                TINY_SAMPLE, tmp_path / "rarely")
    a = [often.train_one(snapshots=True).result.loss for _ in range(5)]
    b = [rarely.train_one(snapshots=False).result.loss for _ in range(5)]
    assert len(list((tmp_path / "often" / "snapshots").glob("*.npy"))) == 5
    assert a == b
    assert _identical(_weights(often), _weights(rarely))


def test_dropout_draws_come_from_the_step_seed_not_the_global_rng(tmp_path):
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        run = TrainingRun.create(TINY_MODEL.replace(dropout=0.5), TINY_SCHEDULE, TINY_TRAIN, TINY_SAMPLE,
                                 tmp_path / str(global_seed))
        before = torch.get_rng_state()
        run.step()
        run.step()
        assert torch.equal(torch.get_rng_state(), before)        # the global generator is left as it was
        runs.append(run)
    assert _identical(_weights(runs[0]), _weights(runs[1]))


def test_resume_with_more_steps_and_a_snapshot(tmp_path):
    out = tmp_path / "r"
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=2), TINY_SAMPLE, out)
    while not run.done:
        run.train_one(snapshots=False)
    assert load_checkpoint(out).step == 2
    more = TrainingRun.resume(out, steps=4)
    assert more.train_config.steps == 4 and not more.done and more.images_seen == 2 * TINY_TRAIN.batch_size
    snap = more.snapshot(per_class=1)
    assert snap.shape == (10, 28, 28) and snap.dtype == torch.uint8
    assert torch.equal(snap, more.snapshot(per_class=1))           # fixed seed: the same film frame


def test_resume_refuses_a_folder_without_a_training_config(tmp_path):
    from engine.checkpoints import CheckpointError, save_checkpoint

    path = save_checkpoint(tmp_path / "m", model=build_model(TINY_MODEL), ema_model=None, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=None)
    with pytest.raises(CheckpointError, match="no training config"):
        TrainingRun.resume(path)
