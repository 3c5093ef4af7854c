"""No command can lose a user's files: what `train --force` may delete, checkpoint swaps that survive a crash at
any instant and readers that never write, one trainer per run folder, bounded reading of every file in a run
folder, and file-system problems reported before training, with the path (crash cycles in a child process:
test_crash_safety.py)."""
import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import checkpoints as ck
from engine import evidence
from engine.cli import main
from engine.cli import train as train_cli
from engine.config import ConfigError, ModelConfig
from engine.presets import MAX_PARAMS, PRESETS, check_model_size, parameter_count
from engine.training import runs
from engine.training.run import TrainingRun
from engine.training.step import NonFiniteLoss, lr_at
from engine.training.trainer import Trainer, TrainerBusy
from engine.unet import build_model, count_parameters

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN

TINY_JSON = {
    "model": {"base_channels": 8, "channel_mults": [1, 2], "attention": False},
    "schedule": {"T": 50},
    "train": {"steps": 3, "batch_size": 8, "checkpoint_every": 1, "sample_every": 1000, "log_every": 1},
    "recommended": {"steps": 3},
}
DEEP = "[" * 100_000 + "]" * 100_000


def _config_file(tmp_path, **train):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY_JSON, "train": {**TINY_JSON["train"], **train}}))
    return path


def _train(tmp_path, out, *extra):
    """`python -m engine train` in this process on the tiny config (no snapshots, one thread)."""
    return main(["train", "--config", str(_config_file(tmp_path)), "--out", str(out), "--no-snapshots",
                 "--threads", "1", "--device", "cpu", *extra])


def _saved_run(folder, steps=2, **train):
    """A run folder checkpointed at `steps` (TrainingRun.save, as the CLI and the Trainer save)."""
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=10, **train), TINY_SAMPLE, folder)
    for _ in range(steps):
        r = run.step()
        run.log({"step": run.step_count, "loss": r.loss})
    run.save()
    return run


def _copies(folder):
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


# -- 1. --force deletes only a run folder, never the working directory, home, the repository --------------------------
def test_force_refuses_a_foreign_folder_and_keeps_its_files(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "metrics.jsonl").write_text("")
    assert _train(tmp_path, mine, "--force") == 2
    err = capsys.readouterr().err
    assert f"--force will not delete {mine}" in err and "thesis.tex" in err and "Traceback" not in err
    assert (mine / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("where", ["cwd", "ancestor", "home", "repo"])
def test_force_refuses_the_working_directory_its_ancestors_home_and_the_repository(tmp_path, monkeypatch, capsys,
                                                                                   where):
    home, repo, deep = tmp_path / "home", tmp_path / "repo", tmp_path / "a" / "b"
    for d in (home, repo, deep):
        d.mkdir(parents=True)
        (d / "keep.txt").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(train_cli, "REPO_ROOT", repo)
    monkeypatch.chdir(deep)
    out = {"cwd": ".", "ancestor": str(tmp_path / "a"), "home": str(home), "repo": str(repo)}[where]
    assert main(["train", "--preset", "tiny", "--out", out, "--force"]) == 2
    assert "a run needs a folder of its own" in capsys.readouterr().err
    assert all((d / "keep.txt").exists() for d in (home, repo, deep))


def test_which_folders_force_may_delete(tmp_path):
    run = _saved_run(tmp_path / "run").out
    (run / "report.json").write_text("{}")
    assert train_cli.why_not_deletable(run) is None                        # a checkpoint and a run's sidecars
    early = tmp_path / "early"                                             # stopped before its first checkpoint
    early.mkdir()
    (early / "metrics.jsonl").write_text('{"step": 1}\n')
    (early / ".metrics.jsonl.tmp").write_text("")
    assert train_cli.why_not_deletable(early) is None
    (run / "notes.md").write_text("mine")
    assert "notes.md" in train_cli.why_not_deletable(run)
    only_snapshots = tmp_path / "photos"
    (only_snapshots / "snapshots").mkdir(parents=True)
    assert "not a training run's folder" in train_cli.why_not_deletable(only_snapshots)
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "config.json").write_text('{"kind": "judge"}')
    (judge / "meta.json").write_text("{}")
    assert "'judge' model" in train_cli.why_not_deletable(judge)
    (tmp_path / "file").write_text("x")
    assert train_cli.why_not_deletable(tmp_path / "file") == "it is not a folder"
    (run / "notes.md").unlink()
    (run / "snapshots").mkdir(exist_ok=True)
    (run / "snapshots" / "step-0000002.npy").write_bytes(b"x")
    assert train_cli.why_not_deletable(run) is None
    (run / "snapshots" / "holiday.jpg").write_bytes(b"x")               # a run's subfolders hold only its files
    assert "snapshots/holiday.jpg" in train_cli.why_not_deletable(run)


def test_force_never_deletes_a_shipped_model():
    """checkpoints/ablations/* hold only what a run writes, yet they are tracked models, not runs."""
    for shipped in ("checkpoints/ablations/no-skip", "checkpoints/default", "checkpoints/one-step"):
        folder = train_cli.REPO_ROOT / shipped
        assert "shipped with Diffusion Lab" in train_cli.why_not_deletable(folder), shipped


# -- 2. checkpoint swaps: the newest complete copy, wherever a crash left it -----------------------------------------
def test_readers_find_the_newest_complete_copy_and_never_write(tmp_path):
    out = _saved_run(tmp_path / "run", steps=2).out
    newer = _saved_run(tmp_path / "other", steps=3).out
    os.rename(out, tmp_path / ".run.old-11_0")                   # crashed between the renames of a swap:
    os.rename(newer, tmp_path / ".run.tmp-abc123")               # the old copy aside, the new one complete
    half = tmp_path / ".run.tmp-zz9"                             # a save killed before writing meta.json
    half.mkdir()
    (half / ck.WEIGHTS).write_bytes(b"partial")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert ck.resolve(out) == tmp_path / ".run.tmp-abc123"
    assert ck.load_checkpoint(out).step == 3 and ck.read_configs(out)[1]["step"] == 3
    assert [r["step"] for r in runs.list_runs(tmp_path) if r["name"] == "run"] == [3]
    assert [e["name"] for e in ck.list_checkpoints(tmp_path)] == ["run"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before                       # nothing renamed
    # a copy whose weights do not match its meta.json is not complete
    data = bytearray((tmp_path / ".run.tmp-abc123" / ck.WEIGHTS).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / ".run.tmp-abc123" / ck.WEIGHTS).write_bytes(bytes(data))
    assert ck.resolve(out) == tmp_path / ".run.old-11_0" and ck.load_checkpoint(out).step == 2


def test_recovery_puts_the_newest_complete_copy_in_place_and_cleans_the_rest(tmp_path):
    out = _saved_run(tmp_path / "run", steps=2).out
    newer = _saved_run(tmp_path / "other", steps=3).out
    os.rename(newer, tmp_path / ".run.tmp-aaa")                  # killed after the copy was complete
    stale = tmp_path / ".run.old-5_1"                            # killed while deleting an old copy
    stale.mkdir()
    (stale / ck.CONFIG).write_text("{}")
    with ck.RunLock(out):
        assert ck.recover_checkpoint(out) is True
    assert ck.load_checkpoint(out).step == 3 and _copies(out) == []
    assert ck.recover_checkpoint(out) is False                   # nothing left to do


def test_resume_continues_a_run_found_only_in_an_old_copy(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tmp_path, out) == 0
    os.rename(out, tmp_path / ".run.old-4242_0")                 # crash between the two renames of a swap
    assert main(["train", "--out", str(out), "--resume", "--steps", "5", "--threads", "1", "--no-snapshots",
                 "--device", "cpu"]) == 0
    assert f"resuming {out} at step 3/5" in capsys.readouterr().out
    assert ck.load_checkpoint(out).step == 5 and _copies(out) == []


def test_the_trainer_recovers_and_resumes_a_run_found_only_in_an_old_copy(tmp_path):
    _saved_run(tmp_path / "r", steps=2, checkpoint_every=2)
    os.rename(tmp_path / "r", tmp_path / ".r.old-1_0")
    tr = Trainer(tmp_path, threads=1)
    tr.resume_run("r", steps=4, device="cpu")
    tr.join(60)
    assert tr.status().state == "finished" and tr.status().step == 4
    assert ck.load_checkpoint(tmp_path / "r").step == 4 and _copies(tmp_path / "r") == []


# -- 3. listing never writes: saves and reads at the same time --------------------------------------------------------
def _listed(rows):
    """The one row's step; its `error` raised as the CheckpointError a direct read would give."""
    (row,) = rows
    if "error" in row:
        raise ck.CheckpointError(row["error"])
    return row["step"]


def test_saving_while_listing_and_loading_never_fails_a_save_and_reads_fail_only_cleanly(tmp_path, tiny_model,
                                                                                         monkeypatch):
    real_rename = os.rename

    def slow_swap(src, dst):          # widen the instant between a swap's two renames, where readers broke saves
        real_rename(src, dst)
        if ".old-" in str(dst):
            time.sleep(0.002)

    monkeypatch.setattr(os, "rename", slow_swap)
    folder = tmp_path / "run"
    save = dict(model=tiny_model, ema_model=tiny_model, model_config=TINY_MODEL, schedule_config=TINY_SCHEDULE,
                train_config=TINY_TRAIN, recommended=TINY_SAMPLE, overwrite=True, keep_sidecars=True)
    ck.save_checkpoint(folder, step=0, **save)
    (folder / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    stop, saved, save_errors = threading.Event(), [0], []

    def keep_saving():
        try:
            while not stop.is_set():
                saved[0] += 1
                ck.save_checkpoint(folder, step=saved[0], **save)
        except BaseException as e:       # noqa: BLE001  -- any failure of a save is what this test looks for
            save_errors.append(e)

    writer = threading.Thread(target=keep_saving)
    writer.start()
    ok, errors, steps = 0, set(), []                     # reads that worked; CheckpointError messages
    try:
        deadline = time.time() + 3
        while time.time() < deadline:
            for read in (lambda: ck.load_checkpoint(folder).step, lambda: ck.read_configs(folder)[1]["step"],
                         lambda: _listed(runs.list_runs(tmp_path)), lambda: _listed(ck.list_checkpoints(tmp_path))):
                try:
                    steps.append(read())
                    ok += 1
                except ck.CheckpointError as e:
                    errors.add(str(e).replace(str(tmp_path), "TMP"))
    finally:
        stop.set()
        writer.join()
    assert save_errors == [] and saved[0] > 20
    assert ok > 100 and errors <= {"TMP/run is being saved right now (its training run replaces it at every "
                                   "checkpoint); try again in a moment"}                      # the only clean refusal
    assert all(isinstance(s, int) for s in steps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]         # no copy left behind


# -- 4. one run folder, one trainer ------------------------------------------------------------------------------------
def test_a_second_trainer_is_refused_naming_the_process_and_a_stale_lock_does_not_block(tmp_path, capsys):
    out = _saved_run(tmp_path / "run").out
    with ck.RunLock(out) as held:
        assert held.file.read_text().split()[0] == str(os.getpid())
        with pytest.raises(ck.RunLocked, match=f"run {out} is being trained by process {os.getpid()} on "):
            ck.RunLock(out).acquire()
        assert main(["train", "--out", str(out), "--resume", "--steps", "4"]) == 2
        assert f"is being trained by process {os.getpid()}" in capsys.readouterr().err
        tr = Trainer(tmp_path, threads=1)
        with pytest.raises(TrainerBusy, match="stop it first"):
            tr.resume_run("run")
        with pytest.raises(TrainerBusy, match="stop it first"):
            tr.start("run", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN, TINY_SAMPLE)
        _saved_run(tmp_path / "other")                          # an untouched neighbour lists as usual
        assert [r["name"] for r in runs.list_runs(tmp_path)] == ["other", "run"]
        ck.save_checkpoint(out, model=build_model(TINY_MODEL), ema_model=None, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=TINY_TRAIN, overwrite=True,
                           keep_sidecars=True)
        assert not any(p.name.endswith("lock") for p in out.iterdir())    # beside the folder, never in a copy
    assert not held.file.exists()
    held.file.write_text("99999 gone-host\n")                   # what kill -9 leaves: the file, no flock on it
    with ck.RunLock(out):
        pass


def test_the_trainer_releases_the_lock_when_its_run_ends(tmp_path):
    tr = Trainer(tmp_path, threads=1)
    tr.start("r", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=2), TINY_SAMPLE, device="cpu")
    tr.join(60)
    assert tr.status().state == "finished"
    with ck.RunLock(tmp_path / "r"):
        pass


# -- 5. every file of a run folder is read bounded --------------------------------------------------------------------
def test_a_config_nested_100000_deep_is_an_error_for_its_folder_only(tmp_path):
    _saved_run(tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / ck.CONFIG).write_text(DEEP)
    (bad / ck.META).write_text("{}")
    listed = {r["name"]: r for r in runs.list_runs(tmp_path)}
    assert "nests more than 64 levels" in listed["bad"]["error"] and listed["good"]["step"] == 2
    entries = {e["name"]: e for e in ck.list_checkpoints(tmp_path)}
    assert "nests more than" in entries["bad"]["error"] and entries["good"]["step"] == 2
    with pytest.raises(ck.CheckpointError, match="nests more than 64"):
        ck.read_configs(bad)
    (bad / ck.CONFIG).write_text(" " * (ck.MAX_JSON_BYTES + 1))
    with pytest.raises(ck.CheckpointError, match="larger than 4 MB"):
        ck.read_configs(bad)


def test_the_depth_scan_is_linear_on_an_unclosed_string(tmp_path):
    """The string-skipping pattern once nested one repeat inside another: 22 characters of an unclosed string
    after 70 brackets took 0.1 s, doubling with each more, holding the GIL for every session and the trainer
    (so the check runs in a child process, which a timeout can stop)."""
    import subprocess
    import sys

    (tmp_path / ck.CONFIG).write_text("[" * 70 + '"' + "a" * 60)
    code = ("import sys; from engine import checkpoints as ck\n"
            "try:\n    ck.read_json(sys.argv[1])\nexcept ck.CheckpointError as e:\n    print(e)")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / ck.CONFIG)], capture_output=True, text=True,
                             timeout=60).stdout
    except subprocess.TimeoutExpired:
        pytest.fail("the nesting scan did not finish: catastrophic backtracking")
    assert "nests more than 64" in out
    assert ck.json_depth(b'{"a\\"[": [1, "x]"]}') == 2          # brackets inside strings (and escapes) do not count


def test_meta_report_evidence_metrics_and_snapshots_are_read_bounded(tmp_path, monkeypatch):
    run = _saved_run(tmp_path / "run").out
    (run / runs.REPORT).write_text(DEEP)
    assert runs.read_report(run) == {}
    evidence.record(run, "bucket_loss", {"seed": 0}, {"x": 1}, 1.0, "cmd")
    assert evidence.read_panel(run, "bucket_loss")
    (run / "evidence" / "bucket_loss.json").write_text(DEEP)
    assert evidence.read_panel(run, "bucket_loss") == {}
    (run / runs.METRICS).write_text('{"step": 1, "loss": 0.5}\n' + DEEP + "\n" + '{"step": 2, "loss": "' + "x" * 70_000
                                    + '"}\n[1, 2]\n{"step": 3, "loss": 0.25}\n')
    assert runs.read_metrics(run / runs.METRICS) == [{"step": 1, "loss": 0.5}, {"step": 3, "loss": 0.25}]
    monkeypatch.setattr(runs, "MAX_METRICS_BYTES", 40)                       # a huge log: its latest records
    assert runs.read_metrics(run / runs.METRICS) == [{"step": 3, "loss": 0.25}]
    snaps = run / runs.SNAPSHOTS
    snaps.mkdir()
    np.save(snaps / "step-0000001.npy", np.zeros((20, 28, 28), np.uint8))
    np.save(snaps / "step-0000002.npy", np.zeros((1001, 28, 28), np.uint8))               # too many images
    np.save(snaps / "step-0000003.npy", np.zeros((20, 28, 28), np.float64))               # not uint8
    np.save(snaps / "step-0000004.npy", np.zeros((20, 14, 14), np.uint8))                 # not digits
    assert [s for s, _ in runs.load_snapshots(run)] == [1]
    meta = json.loads((run / ck.META).read_text())
    (run / ck.META).write_text(json.dumps({**meta, "metrics": json.loads("[" * 70 + "]" * 70)}))
    assert "nests more than" in runs.list_runs(tmp_path)[0]["error"]


def test_a_safetensors_header_over_the_limit_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((ck.MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b"{" + b" " * 64)
    with pytest.raises(ck.CheckpointError, match="MB header"):
        ck._load_safetensors(path, None)
    path.write_bytes((40).to_bytes(8, "little") + b"{" + b'"' * 39)
    with pytest.raises(ck.CheckpointError, match="header is not valid"):
        ck._load_safetensors(path, None)


# -- 6. file-system problems: before training, with the path; during it, one line ------------------------------------
def test_an_unwritable_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro" / "run"
    out.parent.mkdir()
    if os.geteuid() != 0:                                       # root writes anywhere: simulate there instead
        out.parent.chmod(0o555)
    else:
        def read_only(*a, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(out.parent))

        monkeypatch.setattr(ck.tempfile, "mkstemp", read_only)
        monkeypatch.setattr(ck.RunLock, "acquire", lambda self: self)
    try:
        assert _train(tmp_path, out) == 2
    finally:
        out.parent.chmod(0o755)
    err = capsys.readouterr().err
    assert f"cannot write {out.parent}" in err and "Permission denied" in err and "Traceback" not in err
    assert not out.exists()
    (tmp_path / "afile").write_text("x")                        # a path under a file
    assert _train(tmp_path, tmp_path / "afile" / "run") == 2
    assert "a file of that name is in the way" in capsys.readouterr().err


def test_too_little_space_or_a_file_size_limit_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import resource
    import shutil
    import signal

    real = shutil.disk_usage
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    assert _train(tmp_path, tmp_path / "run") == 2
    assert "MB free; this model's checkpoints need about" in capsys.readouterr().err
    monkeypatch.setattr(ck.shutil, "disk_usage", real)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (50_000, 50_000))
    assert _train(tmp_path, tmp_path / "run") == 2
    assert "(ulimit -f)" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN  # over a limit, writes fail with EFBIG, not a kill


def test_a_full_disk_while_saving_is_one_line_exit_1_and_the_last_checkpoint_stays(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real, calls = ck.save_file, [0]

    def fills_up(tensors, filename, **k):
        calls[0] += 1
        if calls[0] > 2:                                        # the second checkpoint (two files each)
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(tensors, filename, **k)

    monkeypatch.setattr(ck, "save_file", fills_up)
    assert _train(tmp_path, out) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot write {tmp_path}/.run.tmp-") and "No space left on device" in err
    assert "the disk is full" in err and "the last complete checkpoint is kept" in err
    assert ck.load_checkpoint(out).step == 1 and _copies(out) == []


def test_config_that_is_a_folder_or_an_array_and_apply_label_42_are_messages(tmp_path, capsys, tiny_model):
    folder = tmp_path / "cfg"
    folder.mkdir()
    assert main(["train", "--config", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert f"--config {folder} is a folder" in capsys.readouterr().err
    (tmp_path / "a.json").write_text("[1, 2]")
    assert main(["train", "--config", str(tmp_path / "a.json"), "--out", str(tmp_path / "r")]) == 2
    assert "holds an array; it must hold a JSON object" in capsys.readouterr().err
    (tmp_path / "typo.json").write_text('{"trian": {}}')
    assert main(["train", "--config", str(tmp_path / "typo.json"), "--out", str(tmp_path / "r")]) == 2
    assert "unknown section(s) trian" in capsys.readouterr().err
    model = ck.save_checkpoint(tmp_path / "m", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                               schedule_config=TINY_SCHEDULE, train_config=None, recommended=TINY_SAMPLE)
    assert main(["apply", "edit", "--checkpoint", str(model), "--label", "42", "--out", str(tmp_path / "e.png")]) == 2
    assert "--label must be a class this model knows, 0 to 9; got 42" in capsys.readouterr().err
    assert main(["apply", "edit", "--checkpoint", str(model), "--out", str(tmp_path / "e")]) == 2
    assert "has no image extension" in capsys.readouterr().err
    assert not (tmp_path / "e.png").exists()


# -- weak items -------------------------------------------------------------------------------------------------------
def test_sample_refuses_more_steps_than_T_and_output_paths_that_are_not_files(tmp_path, capsys, tiny_model):
    model = ck.save_checkpoint(tmp_path / "m", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                               schedule_config=TINY_SCHEDULE, train_config=None, recommended=TINY_SAMPLE)
    base = ["sample", "--checkpoint", str(model), "--per-class", "1", "--device", "cpu"]
    assert main(base + ["--steps", "5000", "--out", str(tmp_path / "s.npz")]) == 2
    assert "--steps 5000 is more than this model's T = 50" in capsys.readouterr().err
    for bad in ("/dev/full", str(tmp_path)):
        assert main(base + ["--out", bad]) == 2
        assert "is not a regular file" in capsys.readouterr().err
    assert not Path("/dev/full.npz").exists()
    assert main(base + ["--out", str(tmp_path / "plain")]) == 0                      # the name as given
    assert np.load(tmp_path / "plain")["images"].shape == (10, 28, 28) and not (tmp_path / "plain.npz").exists()


def test_resume_applies_a_new_learning_rate_and_batch_size_and_says_so(tmp_path, capsys, monkeypatch):
    import sys

    out = tmp_path / "run"
    assert _train(tmp_path, out) == 0
    capsys.readouterr()
    argv = ["train", "--out", str(out), "--resume", "--steps", "4", "--lr", "0.0002", "--batch-size", "4",
            "--threads", "1", "--no-snapshots", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["engine", *argv])                  # what the provenance records
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: lr 0.0002 from step 3 on (it was 0.002)" in printed and "note: batch_size 4" in printed
    saved = ck.load_checkpoint(out)
    assert saved.train_config.lr == 0.0002 and saved.train_config.batch_size == 4
    assert saved.meta["images_seen"] == 3 * 8 + 4 and "--lr 0.0002" in saved.meta["resume_commands"][0]
    again = TrainingRun.resume(out, steps=6)
    assert again.optimizer.param_groups[0]["lr"] == lr_at(4, again.train_config)
    assert again.batches.batch_size == 4 and again.step().t.shape == (4,)
    assert main(["train", "--out", str(out), "--resume", "--seed", "3"]) == 2       # fixed by the run
    assert "--seed cannot change them" in capsys.readouterr().err


def test_resume_without_a_checkpoint_says_so_and_points_to_force(tmp_path, capsys):
    early = tmp_path / "early"
    early.mkdir()
    (early / "metrics.jsonl").write_text('{"step": 1, "loss": 0.9}\n')
    assert main(["train", "--out", str(early), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint yet: the run stopped before its first checkpoint" in err and "--force" in err
    assert main(["train", "--out", str(tmp_path / "never"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_non_finite_weights_are_neither_saved_nor_loaded(tmp_path, tiny_model):
    with torch.no_grad():
        tiny_model.stem.weight[0, 0, 0, 0] = float("nan")
    path = ck.save_checkpoint(tmp_path / "nan", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                              schedule_config=TINY_SCHEDULE, train_config=None)
    with pytest.raises(ck.CheckpointError, match="tensor model.stem.weight holds NaN or infinite values"):
        ck.load_checkpoint(path)
    run = _saved_run(tmp_path / "run")
    with torch.no_grad():
        next(run.model.parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteLoss, match="last good checkpoint is kept"):
        run.save()
    assert ck.load_checkpoint(run.out).step == 2


@pytest.mark.parametrize("sha256, message", [
    ({ck.WEIGHTS: "abc"}, "sha256 for weights.safetensors is malformed"),
    ({ck.WEIGHTS: 12}, "sha256 for weights.safetensors is malformed"),
    ({}, "sha256 for weights.safetensors is missing"),
    ("deadbeef", "sha256 is missing or malformed"),
    (None, "sha256 is missing or malformed"),
])
def test_a_malformed_sha256_is_an_error_not_a_skipped_check(tmp_path, tiny_model, sha256, message):
    path = ck.save_checkpoint(tmp_path / "m", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                              schedule_config=TINY_SCHEDULE, train_config=None)
    meta = json.loads((path / ck.META).read_text())
    meta["sha256"] = sha256
    (path / ck.META).write_text(json.dumps(meta))
    with pytest.raises(ck.CheckpointError, match=message):
        ck.load_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match=message):
        ck.read_tensors(path)
    ck.load_checkpoint(path, verify=False)                      # an explicit opt-out still loads


def test_model_size_cap(tmp_path, capsys):
    default = PRESETS["default"].model
    assert check_model_size(default) == parameter_count(default) == count_parameters(build_model(default))
    huge = ModelConfig(base_channels=512, channel_mults=(1, 2, 2), num_res_blocks=8)
    n, ratio = parameter_count(huge), parameter_count(huge) / parameter_count(default)
    with pytest.raises(ConfigError, match="limited to 20 M parameters") as e:
        check_model_size(huge)
    assert f"{n / 1e6:,.1f} M parameters, {ratio:,.0f}×" in str(e.value) and f"~{20 * n / 2**30:.1f} GB" in str(e.value)
    assert parameter_count(huge) > MAX_PARAMS > 10 * parameter_count(PRESETS["wide"].model)
    assert main(["train", "--preset", "default", "--model-set", "base_channels=512", "--model-set",
                 "num_res_blocks=8", "--out", str(tmp_path / "big")]) == 2
    assert "pass --allow-large" in capsys.readouterr().err and not (tmp_path / "big").exists()
