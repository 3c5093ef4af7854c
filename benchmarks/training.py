"""Training figures: images/s of a training step (eager, torch.compile'd, the peer) and the time to quality."""
from __future__ import annotations

import tempfile
import time

import torch
import torch.nn as nn

from engine.accel import compile_for_training, to_device
from engine.config import TrainConfig
from engine.data import load as load_data
from engine.judge import load_judge, predict
from engine.presets import get_preset
from engine.sampling import class_labels, sample
from engine.schedule import NoiseSchedule
from engine.training import TrainingRun, make_optimizer, train_step
from engine.unet import build_model

from .peer import peer_recipe
from .timing import median_time


def train_throughput(model: nn.Module, batch: int, steps: int, schedule: NoiseSchedule,
                     device: str | torch.device = "cpu", p_uncond: float = 0.1) -> float:
    """Median images/s of train_step on real digits (same code path as real training); model on `device`.

    p_uncond: the label-dropout rate of the recipe (ours 0.1; the peer's recipe drops none: 0.0).
    """
    train, _ = load_data("mnist-5k")
    cfg = TrainConfig(batch_size=batch, p_uncond=p_uncond)
    opt = make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(0)
    x, y = train.images[:batch].to(device), train.labels[:batch].to(device)
    dt = median_time(lambda: train_step(model, opt, schedule, x, y, cfg, 1000, g), steps, warmup=2, device=device)
    return batch / dt


def compiled_training(schedule: NoiseSchedule, reps: int, forward_flops: float, matmul: float, log=print,
                      device: str | torch.device = "cpu") -> dict:
    """The default preset's training throughput through torch.compile (train --compile), beside the eager one."""
    torch.manual_seed(0)
    model = to_device(build_model(get_preset("default").model), device)
    trained, seconds, error = compile_for_training(model, 128)
    if error:
        log(f"compiled training skipped: torch.compile failed ({error})")
        return {"compile_train_error": error}
    ips = train_throughput(trained, 128, reps, schedule, device)
    util = 3 * forward_flops * ips / 1e9 / matmul
    log(f"train default, torch.compile'd: {ips:.0f} images/s, utilisation {util:.3f} (after a {seconds:.0f} s "
        "one-off compile)")
    return {"compile_train_s": round(seconds, 1), "train_img_per_s_default_compiled": round(ips, 1),
            "train_flops_utilisation_compiled": round(util, 3)}


class PeerRun:
    """The peer's recipe trained by hand, with the run interface time_to_quality reads (step, step_count, done,
    sampling_model): the same train_step, batches of 128 in one fixed shuffled order, repeated."""

    def __init__(self, device: str | torch.device, generator: torch.Generator) -> None:
        recipe = peer_recipe()
        self.model = recipe.model.to(device)
        self.schedule, self.train_config, self.sample_config = recipe.schedule, recipe.train, recipe.sample
        self.optimizer = make_optimizer(self.model, self.train_config)
        self.device, self.generator = device, generator
        self.data, _ = load_data("mnist-5k")
        self.order = torch.randperm(len(self.data), generator=generator)
        self.next_index = 0
        self.step_count = 0
        self.done = False                      # the course recipe has no schedule end

    def step(self) -> None:
        if self.next_index + 128 > len(self.order):
            self.next_index = 0
        idx = self.order[self.next_index:self.next_index + 128]
        self.next_index += 128
        train_step(self.model, self.optimizer, self.schedule, self.data.images[idx].to(self.device),
                   self.data.labels[idx].to(self.device), self.train_config, self.step_count, self.generator)
        self.step_count += 1

    def sampling_model(self) -> nn.Module:
        return self.model                      # no EMA in the course recipe


class RecipeRun:
    """One of our presets as a TrainingRun, with the interface of PeerRun; samples from the EMA weights."""

    def __init__(self, preset: str, out: str, device: str | torch.device) -> None:
        p = get_preset(preset)
        self.run = TrainingRun.create(p.model, p.schedule, p.train, p.recommended, out, device)
        self.schedule = self.run.schedule
        self.sample_config = p.recommended.replace(sampler="ddim", steps=25)

    def step(self) -> None:
        self.run.step()

    @property
    def step_count(self) -> int:
        return self.run.step_count

    @property
    def done(self) -> bool:
        return self.run.done                   # the recipe's own schedule has ended

    def sampling_model(self) -> nn.Module:
        return self.run.ema.model


def time_to_quality(recipe: str, target: float = 0.95, cap_s: float = 480.0, eval_every_s: float = 30.0,
                    per_class: int = 10, log=print, device: str | torch.device = "cpu") -> dict:
    """Training seconds until the judge reads `target` of freshly generated digits right, or the cap.

    Shortened protocol (stated in the output): train the recipe from scratch on mnist-5k; after every
    `eval_every_s` seconds of training, generate `per_class` digits per class (DDIM-25 at the recipe's guidance,
    from the EMA weights where the recipe keeps them) and ask the judge. Evaluation time is not counted as
    training time; the clock reports training seconds at the first evaluation that reaches the target.
    recipe: a preset name (our recipes) or "peer" (the diffusers U-Net with the HF course's recipe).
    """
    judge = load_judge()
    labels = class_labels(per_class)
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        run = PeerRun(device, g) if recipe == "peer" else RecipeRun(recipe, tmp, device)
        guidance = run.sample_config.guidance
        trained, curve, reached = 0.0, [], None
        while trained < cap_s and reached is None:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < eval_every_s and trained + (time.perf_counter() - t0) < cap_s:
                if run.done:
                    break
                run.step()
            trained += time.perf_counter() - t0
            m = run.sampling_model()
            m.eval()                           # (train_step puts a trained model back in training mode)
            with torch.inference_mode():
                x = sample(m, run.schedule, labels, run.sample_config)
            probs, _ = predict(judge, x)
            # counted exactly: 95 of 100 is 0.95 (a float32 mean gives 0.94999999, which missed the target)
            acc = int((probs.argmax(1) == labels).sum()) / len(labels)
            curve.append({"train_s": round(trained, 1), "steps": run.step_count, "judge_accuracy": round(acc, 3)})
            log(f"  {recipe}: {trained:6.0f} s of training, {run.step_count:5d} steps, judge accuracy {acc:.1%}")
            if acc >= target:
                reached = trained
            elif run.done:
                break
    return {"recipe": recipe, "target": target, "cap_s": cap_s, "guidance": guidance,
            "time_to_target_s": None if reached is None else round(reached, 1), "curve": curve,
            "protocol": f"train from scratch; every {eval_every_s:.0f} s of training, {per_class * 10} digits "
                        f"DDIM-25 at w = {guidance}, judged; evaluation time not counted"}
