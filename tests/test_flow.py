"""Flow matching for the digit model: the linear path as a schedule, the velocity objective, Euler and Heun in the
sampler registry (checked against diffusers' flow-matching schedulers step by step), and `train --objective flow`."""
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from engine.config import ConfigError, SampleConfig, ScheduleConfig
from engine.sampling import sample_progressive
from engine.schedule import FLOW_S_MAX, NoiseSchedule
from engine.training.step import loss_weights

FLOW = ScheduleConfig(kind="flow", T=1000)


def _field(x_flow: torch.Tensor, s: float) -> torch.Tensor:
    """A smooth, nonlinear stand-in for a velocity network, in the linear path's own units (x_flow, s)."""
    return torch.tanh(1.5 * x_flow) * (1 + s) - 0.4 * x_flow * s + 0.3 * math.sin(3 * s)


def _eps_fn(schedule: NoiseSchedule):
    """The stand-in as our loop sees a velocity model: state in variance-preserving units, output -> eps."""
    def eps(x_t: torch.Tensor, t: int) -> torch.Tensor:
        k, s = schedule.flow_coordinates(t)
        return schedule.eps_from_output(x_t, t, _field(k * x_t, s))
    return eps


def test_the_flow_schedule_is_the_linear_path_rescaled():
    s = NoiseSchedule(FLOW)
    x0, eps = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    for t in (0, 1, 249, 500, 998, 999):
        k, level = s.flow_coordinates(t)
        assert level == pytest.approx(min((t + 1) / 1000, FLOW_S_MAX), abs=1e-12)
        x_t = s.q_sample(x0, torch.full((3,), t), eps)
        assert torch.allclose(k * x_t, (1 - level) * x0 + level * eps, atol=1e-4)   # the path's own point
        # (1e-4: q_sample reads alpha_bar in float32, where 1 - alpha_bar = 1e-6 at t = 0 keeps 2 digits)
        v = s.training_target(x0, eps)
        assert torch.equal(v, eps - x0)
        eps_hat = s.eps_from_output(x_t, t, v)                                     # the exact velocity ...
        assert torch.allclose(eps_hat, eps, atol=1e-4)                              # ... is the exact noise
        if t < 999:
            assert torch.allclose(s.predict_x0_from_eps(x_t, t, eps_hat), x0, atol=1e-3)
    assert s.flow_coordinates(-1) == (1.0, 0.0)
    cosine = NoiseSchedule(ScheduleConfig(kind="cosine", T=1000))
    assert not cosine.predicts_velocity and s.predicts_velocity
    out = torch.randn(2, 1, 28, 28)
    assert torch.equal(cosine.eps_from_output(out, 10, out), out)                  # an eps-model: unchanged
    assert torch.equal(loss_weights(s, torch.tensor([0, 500, 999]), 5.0), torch.ones(3))   # FM: plain v-MSE
    with pytest.raises(ConfigError, match="flow"):
        ScheduleConfig(kind="flows")


@pytest.mark.parametrize("kind", ["cosine", "flow"])
@pytest.mark.parametrize("clip", [False, True])
def test_euler_is_ddim(kind, clip):
    """Euler on the linear path and DDIM (eta = 0) are one update, for any schedule: same images."""
    s = NoiseSchedule(ScheduleConfig(kind=kind, T=1000))
    x_T = torch.randn(4, 1, 28, 28)
    run = lambda name: [st.x_prev for st in _steps(s, name, 10, clip, x_T)]  # noqa: E731
    for a, b in zip(run("euler"), run("ddim")):
        assert torch.allclose(a, b, atol=1e-4 * max(1.0, float(b.abs().max())))


def _steps(s: NoiseSchedule, name: str, steps: int, clip: bool, x_T: torch.Tensor):
    model = _Stub()
    return list(sample_progressive(model, s, torch.zeros(x_T.shape[0], dtype=torch.long),
                                   SampleConfig(sampler=name, steps=steps, guidance=0.0, clip_x0=clip),
                                   x_T=x_T, eps_fn=_eps_fn(s), seeds=list(range(x_T.shape[0]))))


class _Stub(torch.nn.Module):
    """Only what the loop asks of a model besides its calls (eps_fn replaces those): a device and a config."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        from engine.config import ModelConfig
        self.cfg = ModelConfig()


def _diffusers(name: str, levels: list[float]):
    """diffusers' flow-matching scheduler on our levels s (ours end on the clean image, s = 0, as theirs do)."""
    if name == "euler":
        ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        ref.set_timesteps(sigmas=levels)
        return ref
    ref = FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    ref.set_timesteps(len(levels))
    sig = torch.tensor(levels + [0.0], dtype=torch.float32)          # its set_timesteps, on our levels
    ref.timesteps = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2)]) * 1000
    ref.sigmas = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
    return ref


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_flow_samplers_match_diffusers(name, steps):
    """Same start, same velocity field: our sampler (state in variance-preserving units, output turned into eps
    and back) ends where diffusers' FlowMatch{Euler,Heun}DiscreteScheduler ends, which works on the path itself;
    Heun asks the field 2N - 1 times, as theirs does."""
    s = NoiseSchedule(FLOW)
    ts = s.timesteps(steps)
    levels = [s.flow_coordinates(t)[1] for t in ts]
    x_T = torch.randn(3, 1, 28, 28, dtype=torch.float64)   # float64 here: in float32 the first step's x̂₀ = (x -
    calls = []                                            # sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) divides by 1e-4
    eps = _eps_fn(s)
    ours = list(sample_progressive(_Stub(), s, torch.zeros(3, dtype=torch.long),
                                   SampleConfig(sampler=name, steps=steps, guidance=0.0, clip_x0=False), x_T=x_T,
                                   eps_fn=lambda x, t: calls.append(t) or eps(x, t), seeds=[0, 1, 2]))
    ref = _diffusers(name, levels)
    x = s.flow_coordinates(ts[0])[0] * x_T.float()
    ref_calls = 0
    for i, tt in enumerate(ref.timesteps):
        sigma = levels[i] if name == "euler" else float(tt) / 1000
        x = ref.step(_field(x, sigma), tt, x).prev_sample
        ref_calls += 1
    assert len(calls) == ref_calls == (steps if name == "euler" else 2 * steps - 1)
    assert torch.allclose(ours[-1].x_prev.float(), x, atol=1e-4), float((ours[-1].x_prev - x).abs().max())


def test_heun_is_second_order_and_euler_first():
    """Halving the step size divides Heun's error by about 4 and Euler's by about 2 (against 400 Heun steps)."""
    s = NoiseSchedule(ScheduleConfig(kind="flow", T=1000))
    x_T = torch.randn(2, 1, 8, 8)
    truth = _steps(s, "heun", 400, False, x_T)[-1].x_prev
    err = {(n, k): float((_steps(s, n, k, False, x_T)[-1].x_prev - truth).abs().max())
           for n in ("euler", "heun") for k in (20, 40)}
    assert 1.6 < err["euler", 20] / err["euler", 40] < 2.5
    assert 3.0 < err["heun", 20] / err["heun", 40] < 5.0
    assert err["heun", 40] < err["euler", 40] / 5


def test_train_objective_flow_writes_a_velocity_run_that_samples(tmp_path):
    """`python -m engine train --objective flow` as a user runs it: the run's schedule is the flow path, its
    recommended sampler Euler, its loss the velocity MSE; `sample` draws digits from it with Euler and Heun;
    `--objective eps` on a flow config trains DDPM on the cosine schedule; distillation refuses a flow teacher."""
    import json
    import subprocess
    import sys

    from engine import checkpoints as ck
    from engine.sampling import sample
    from engine.training.runs import read_metrics

    from .test_cli_train import TINY_JSON

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_JSON))
    out = tmp_path / "flow"
    engine = lambda *a: subprocess.run([sys.executable, "-m", "engine", *a], capture_output=True,  # noqa: E731
                                       text=True, timeout=300)
    r = engine("train", "--config", str(cfg), "--objective", "flow", "--out", str(out), "--threads", "1",
               "--no-snapshots")
    assert r.returncode == 0, r.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["schedule"]["kind"] == "flow" and saved["recommended"]["sampler"] == "euler"
    assert all(m["loss"] > 0 for m in read_metrics(out / "metrics.jsonl"))
    run = ck.load_checkpoint(out)
    schedule = NoiseSchedule(run.schedule_config)
    for name in ("euler", "heun"):
        x = sample(run.model, schedule, torch.tensor([3, 7]), run.recommended.replace(sampler=name, steps=3))
        assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    r = engine("train", "--config", str(cfg), "--objective", "eps", "--out", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr                      # eps on a cosine config: the plain objective
    flow_cfg = tmp_path / "flow.json"
    flow_cfg.write_text(json.dumps({**TINY_JSON, "schedule": {"kind": "flow", "T": 100}}))
    r = engine("train", "--config", str(flow_cfg), "--objective", "eps", "--out", str(tmp_path / "y"), "--steps", "1",
               "--no-snapshots")
    assert r.returncode == 0, r.stderr                      # eps on a flow config: DDPM on the cosine schedule
    assert json.loads((tmp_path / "y" / "config.json").read_text())["schedule"]["kind"] == "cosine"
    r = engine("distill", "--teacher", str(out), "--out", str(tmp_path / "student"), "--start-steps", "4",
               "--end-steps", "2", "--iterations", "1")
    assert r.returncode != 0 and "flow-matching" in r.stderr
