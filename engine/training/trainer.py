"""The background Trainer: one per server process, one run at a time, in a daemon thread that never touches
the UI. Outside code calls start / pause / resume / stop and reads immutable TrainerStatus snapshots.
"""
from __future__ import annotations

import atexit
import logging
import dataclasses
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoints as ck
from ..config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
from ..devices import pick_device
from ..presets import parameter_count
from .run import TrainingRun, saved_parameters
from .runs import DEFAULT_RUNS_ROOT, METRICS, load_snapshots, read_metrics
from .step import NonFiniteLoss

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
LOG = logging.getLogger(__name__)
MAX_HISTORY = 4000          # loss-chart points kept; beyond it the history is halved (every other point)


class TrainerBusy(RuntimeError):
    """A second start while a run is active (one machine, one training job)."""


def check_run_name(name: str) -> str:
    """`name` itself if it is a safe run folder name (1-48 letters, digits, '-', '_', '.'); else ValueError."""
    if not isinstance(name, str) or not RUN_NAME.match(name) or ".." in name:
        raise ValueError(f"run name must be 1-48 letters, digits, '-', '_' or '.', with no path separators; "
                         f"got {name!r}")
    return name


def training_threads() -> int:
    """Threads for the training thread: leave one core for the web server and the pages on small machines.

    Measured on the 2-core CPU: with both cores busy in torch, the UI's own small tensor ops slowed by ~70x;
    one training thread costs ~35 % of two-thread throughput and keeps every page responsive.
    """
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores - 2


@dataclass(frozen=True)
class TrainerStatus:
    """An immutable snapshot of the Trainer; safe to read from any page, any session."""

    state: str                         # idle | running | paused | stopping | finished | failed
    run_name: str | None = None
    step: int = 0
    total: int = 0
    device: str = "cpu"
    images_per_s: float = 0.0
    eta_s: float | None = None
    loss_history: tuple = ()           # ((step, loss), ...) downsampled to <= MAX_HISTORY points
    loss_by_bucket: tuple = (None,) * 10
    snapshots: tuple = ()              # ((step, uint8 array (20, 28, 28)), ...)
    judge_history: tuple = ()          # ((step, accuracy, {class: accuracy}), ...)
    last_checkpoint: str | None = None
    error: str | None = None
    message: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("running", "paused", "stopping")


class Trainer:
    """Runs one TrainingRun at a time in a daemon thread.

    All mutable state lives behind `self._lock`; the thread publishes a fresh TrainerStatus after each step,
    so readers never see a half-updated object. The thread never calls Streamlit.
    """

    def __init__(self, runs_root: str | Path = DEFAULT_RUNS_ROOT, judge_loader=None,
                 threads: int | None = None) -> None:
        self.runs_root = Path(runs_root)
        self._judge_loader = judge_loader
        self._threads = threads
        self._lock = threading.Lock()
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = TrainerStatus("idle")
        # The thread is a daemon (a stuck step must never keep the server from exiting), so at interpreter exit
        # (the dashboard stopped with Ctrl-C or SIGTERM) an active run is first stopped after its current step,
        # which saves a checkpoint there: without this, every step since the last periodic checkpoint is lost.
        atexit.register(self.stop, wait=60.0)

    # -- control -----------------------------------------------------------------------------------------------
    def status(self) -> TrainerStatus:
        with self._lock:
            return self._status

    def start(self, name: str, model_config: ModelConfig, schedule_config: ScheduleConfig,
              train_config: TrainConfig, recommended: SampleConfig, *, init_from: str | None = None,
              device: str = "auto") -> TrainerStatus:
        """Start a new run `name` under runs_root; raises TrainerBusy naming the active run (or the process that
        trains this run folder), FileExistsError for a taken name, RunFolderError (a ValueError) when the folder
        cannot be written or holds too little space."""
        check_run_name(name)
        out = self.runs_root / name
        with self._lock:
            self._refuse_if_busy()
            lock = self._claim(out)
            try:
                if out.exists() and any(out.iterdir()):
                    raise FileExistsError(f"a run named {name!r} already exists; resume it or pick another name")
                ck.check_writable(out, parameter_count(model_config))
            except BaseException:
                lock.release()
                raise
            self._launch(lambda: TrainingRun.create(model_config, schedule_config, train_config, recommended, out,
                                                    pick_device(device), f"dashboard: start {name}",
                                                    init_from=init_from),
                         name, train_config.steps, lock)
            return self._status

    def resume_run(self, name: str, device: str = "auto", steps: int | None = None) -> TrainerStatus:
        """Continue run `name` from its last checkpoint (after a stop, a crash or a server restart); the same
        errors as `start`, and FileNotFoundError when the run has no checkpoint yet."""
        check_run_name(name)
        out = self.runs_root / name
        with self._lock:
            self._refuse_if_busy()
            lock = self._claim(out)
            try:
                if not (out / ck.WEIGHTS).exists():
                    raise FileNotFoundError(f"run {name!r} has no checkpoint to resume from")
                ck.check_writable(out, saved_parameters(out))
            except BaseException:
                lock.release()
                raise
            self._launch(lambda: TrainingRun.resume(out, pick_device(device), steps=steps,
                                                    command=f"dashboard: resume {name}"), name, steps or 0, lock)
            return self._status

    def pause(self) -> None:
        with self._lock:
            if self._status.state == "running":
                self._pause.set()
                self._status = dataclasses.replace(self._status, state="paused", message="paused")

    def resume(self) -> None:
        with self._lock:
            if self._status.state == "paused":
                self._pause.clear()
                self._status = dataclasses.replace(self._status, state="running", message=None)

    def stop(self, wait: float | None = None) -> None:
        """Ask the run to stop after its current step (it writes a final checkpoint)."""
        with self._lock:
            thread = self._thread
            if self._status.active:
                self._stop.set()
                self._pause.clear()
                self._status = dataclasses.replace(self._status, state="stopping", message="stopping…")
        if wait and thread is not None:
            thread.join(wait)

    def join(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    # -- internals ---------------------------------------------------------------------------------------------
    def _refuse_if_busy(self) -> None:
        if self._status.active and self._thread is not None and self._thread.is_alive():
            raise TrainerBusy(f"run {self._status.run_name!r} is already training ({self._status.state}); "
                              "one training job at a time — pause or stop it first")

    @staticmethod
    def _claim(out: Path) -> ck.RunLock:
        """The run folder's lock (one trainer per folder, the CLI's included), then the newest complete
        checkpoint put in place and a crashed save's leftovers removed (only the lock holder may)."""
        try:
            lock = ck.RunLock(out).acquire()
        except ck.RunLocked as e:
            raise TrainerBusy(str(e)) from None
        try:
            ck.recover_checkpoint(out)
        except OSError as e:
            lock.release()
            raise ck.RunFolderError(ck.write_problem(e.filename or out, e)) from None
        return lock

    def _launch(self, make_run, name: str, total: int, lock: ck.RunLock) -> None:
        self._stop.clear()
        self._pause.clear()
        self._status = TrainerStatus("running", run_name=name, total=total, message="starting…")
        self._thread = threading.Thread(target=self._main, args=(make_run, lock), daemon=True,
                                        name=f"trainer-{name}")
        self._thread.start()

    def _publish(self, **changes) -> None:
        with self._lock:
            self._status = dataclasses.replace(self._status, **changes)

    def _main(self, make_run, lock: ck.RunLock) -> None:
        """The thread: open the run, train until done or stopped, save; every failure ends in the status. The run
        folder's lock is released before the final status is published, so a Start or Resume that the status
        invites is never refused by this thread's own lock."""
        run, final = None, {}
        try:
            torch.set_num_threads(self._threads or training_threads())
            run = make_run()
            self._train(run)
            path = run.save()
            message = "finished" if run.done else f"stopped at step {run.step_count} (checkpoint saved)"
            final = dict(state="finished" if run.done else "idle", last_checkpoint=str(path), step=run.step_count,
                         message=message)
        except NonFiniteLoss as e:
            final = dict(state="failed", error=f"{e}. The last good checkpoint is kept.")
        except torch.OutOfMemoryError:
            final = dict(state="failed", error="out of memory: lower the batch size or the width. The last good "
                                               "checkpoint is kept.")
        except OSError as e:
            where = e.filename or (run.out if run is not None else "the run folder")
            final = dict(state="failed", error=f"{ck.write_problem(where, e)}. The last complete checkpoint is kept.")
        except Exception as e:  # anything else: visible in the status, never a silent dead thread
            LOG.error("training thread failed", exc_info=e)
            final = dict(state="failed", error=f"{type(e).__name__}: {e}")
        finally:
            lock.release()
            if final:
                self._publish(**final)

    def _train(self, run: TrainingRun) -> None:
        """Step `run` until it is done or asked to stop, publishing a status after every step."""
        history, judged, snaps = self._open(run)
        rate = 0.0
        while not run.done and not self._stop.is_set():
            if self._pause.is_set():
                time.sleep(0.1)
                continue
            ev = run.train_one()
            if ev.logged:
                history.append((run.step_count, ev.logged["loss"]))
                if len(history) > MAX_HISTORY:                # keep charts light: halve the resolution
                    history = history[::2]
                rate = ev.logged["images_per_s"]
            if ev.snapshot is not None:
                snaps.append((run.step_count, ev.snapshot.numpy()))
            if ev.judged is not None:
                judged.append((run.step_count, ev.judged["judge_accuracy"], ev.judged["judge_per_class"]))
            left = run.train_config.steps - run.step_count
            eta = left * run.train_config.batch_size / rate if rate > 0 else None
            self._publish(step=run.step_count, images_per_s=rate, eta_s=eta, loss_history=tuple(history),
                          loss_by_bucket=tuple(run.loss_by_bucket), snapshots=tuple(snaps),
                          judge_history=tuple(judged),
                          last_checkpoint=str(ev.checkpoint) if ev.checkpoint else self._status.last_checkpoint)

    def _open(self, run: TrainingRun) -> tuple[list, list, list]:
        """Attach the judge, publish what the run folder already holds; returns (losses, judged, snapshots)."""
        if self._judge_loader is not None:
            try:
                run.judge = self._judge_loader()
            except Exception:   # no judge: train anyway, without the accuracy chart
                run.judge = None
        logged = read_metrics(run.out / METRICS)
        history = [(r["step"], r["loss"]) for r in logged if "loss" in r]
        judged = [(r["step"], r["judge_accuracy"], r.get("judge_per_class", {})) for r in logged
                  if "judge_accuracy" in r]
        snaps = load_snapshots(run.out)
        self._publish(total=run.train_config.steps, step=run.step_count, device=str(run.device),
                      loss_history=tuple(history), judge_history=tuple(judged), snapshots=tuple(snaps),
                      message=None)
        return history, judged, snaps
