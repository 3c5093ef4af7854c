"""The geometry lab: diffusion and flow matching on 2-D points, where every particle can be watched.

The digit model's ideas at a size a learner can see whole (Diffusion Explorer, Helbling & Chau 2025; GAN Lab):
2-D data sets, a small MLP denoiser conditioned on the noise level (and optionally on a class, with a null class
for classifier-free guidance), two objectives, samplers that return whole trajectories, the learned field on a
grid, and fit figures from which a page can say "good fit" truthfully.

Both objectives are Gaussian paths  x_s = a(s) x0 + b(s) ε,  ε ~ N(0, I),  with a noise level s in [0, 1]
(0 = the data, 1 = pure noise) that the pages use as their one time axis:

  ddpm  ε-prediction on the project's NoiseSchedule (cosine, T = 1000; Ho et al. 2020, Nichol & Dhariwal 2021):
        timestep t = 0 .. T-1 sits at s = (t + 1) / T,  a = √ᾱ_t,  b = √(1 - ᾱ_t);
        loss ‖ε̂(x_t, s) - ε‖²
  flow  flow matching on the straight path (Lipman et al. 2023; rectified flow, Liu et al. 2022):
        a = 1 - s,  b = s,  s ~ U[0, 1];  loss ‖v̂(x_s, s) - (ε - x0)‖²   (the velocity dx_s/ds)

From either prediction the model's x̂0 and ε̂ follow (x = a x̂0 + b ε̂), so the samplers, the forward process and
the fit figures are written once in those terms.

Shapes: points (N, 2) float32 in data units (every data set scaled to roughly unit variance); labels (N,) int64 in
[0, num_classes), the index num_classes being the null class ("no label"); trajectories (n_steps + 1, N, 2), the
first row the starting noise and the last the samples. Every function that draws takes a seed or a generator.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from . import budget
from .config import ScheduleConfig, _check_choice, _check_range
from .schedule import NoiseSchedule

DATASETS = ("moons", "spiral", "mixture", "points")
OBJECTIVES = ("ddpm", "flow")
# the samplers each objective offers, the pages' default first; "ancestral" on the flow path is the DDPM posterior
# written in the flow's coefficients (see `ancestral_step`), so both objectives can be compared with noise and without
SAMPLERS = {"ddpm": ("ddpm", "ddim"), "flow": ("euler", "heun", "ancestral")}
DETERMINISTIC = {"ddpm": "ddim", "flow": "euler"}       # each objective's deterministic and stochastic sampler
STOCHASTIC = {"ddpm": "ddpm", "flow": "ancestral"}
MIXTURE_CLASSES = 4


# -- data ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointSet:
    """2-D points x (N, 2) float32 with a class per point y (N,) int64 in [0, num_classes) (all 0 when the set
    has no labels, num_classes = 1) and a name."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str

    @property
    def labelled(self) -> bool:
        return self.num_classes > 1


# Scale constants measured once on 10^6 points of each set (mean and the overall standard deviation), fixed
# here so that every draw, training set, held-out set or "fresh draw", lies on the same axes.
_MOONS_CENTRE, _MOONS_STD = (0.5, 0.25), 0.7076
_SPIRAL_CENTRE, _SPIRAL_STD = (2.02, 0.22), 6.80
MIXTURE_RADIUS, MIXTURE_STD = 1.3, 0.4        # per-coordinate variance R²/2 + s² = 1.005


def _moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles (scikit-learn's make_moons with random angles), noise 0.06; classes 0, 1
    in equal halves (as make_moons), so two draws differ only by where the points fall, not by how many per moon."""
    y = (torch.arange(n) % 2)[torch.randperm(n, generator=g)]                  # which moon: equal halves
    theta = math.pi * torch.rand(n, generator=g)
    outer = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)                    # (N, 2)
    inner = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)          # (N, 2)
    x = torch.where(y[:, None] == 0, outer, inner) + 0.06 * torch.randn(n, 2, generator=g)
    return (x - torch.tensor(_MOONS_CENTRE)) / _MOONS_STD, y


def _spiral(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One arm of a 2-D Swiss roll (scikit-learn's make_swiss_roll: angle 1.5π (1 + 2u)), noise 0.4."""
    u = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    x = torch.stack([u * torch.cos(u), u * torch.sin(u)], dim=1) + 0.4 * torch.randn(n, 2, generator=g)
    return (x - torch.tensor(_SPIRAL_CENTRE)) / _SPIRAL_STD, torch.zeros(n, dtype=torch.long)


def _mixture(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MIXTURE_CLASSES Gaussians (std 0.4) on a ring of radius 1.3, one class each, in equal shares."""
    y = (torch.arange(n) % MIXTURE_CLASSES)[torch.randperm(n, generator=g)]     # equal shares, shuffled
    angle = 2 * math.pi * (y.double() + 0.5) / MIXTURE_CLASSES
    centres = MIXTURE_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1).float()
    return centres + MIXTURE_STD * torch.randn(n, 2, generator=g), y


def mixture_centres() -> torch.Tensor:
    """The centres of the labelled mixture's classes, (MIXTURE_CLASSES, 2)."""
    angle = 2 * math.pi * (torch.arange(MIXTURE_CLASSES, dtype=torch.float64) + 0.5) / MIXTURE_CLASSES
    return (MIXTURE_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)).float()


def standardise_points(points) -> torch.Tensor:
    """A user's points (M, 2) (e.g. pixels of a drawing, y up) moved to mean 0 and scaled to unit variance
    (one scale for both axes, so the shape keeps its proportions). Raises ValueError for fewer than 3 distinct
    points or non-finite values."""
    p = torch.as_tensor(points, dtype=torch.float32)
    if p.dim() != 2 or p.shape[1] != 2:
        raise ValueError(f"points must be an (M, 2) array of (x, y), got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError("points must be finite numbers")
    if len(torch.unique(p, dim=0)) < 3:
        raise ValueError(f"draw at least 3 distinct points, got {len(torch.unique(p, dim=0))}")
    p = p - p.mean(0)
    return p / p.pow(2).mean().sqrt()


def make_dataset(name: str, n: int, seed: int, points=None, jitter: float = 0.05) -> PointSet:
    """n points of data set `name`, the same for the same seed.

    name: "moons" (two classes, the two half circles), "spiral" (one class), "mixture" (MIXTURE_CLASSES
    labelled Gaussians on a ring) or "points": n draws from the user's `points` (M, 2) (standardise_points),
    each with Gaussian jitter of std `jitter` (data units), so a few hundred drawn pixels become a density.
    Every set is scaled to roughly unit variance per coordinate. The moons' labels exist but the lab trains
    the moons unconditionally (`conditional_data`).
    """
    _check_choice("data set", name, DATASETS)
    _check_range("number of points", n, 1, 1_000_000, integer=True)
    g = torch.Generator().manual_seed(int(seed))
    if name == "points":
        if points is None:
            raise ValueError("the 'points' data set needs the user's points")
        base = standardise_points(points)
        idx = torch.randint(0, len(base), (n,), generator=g)
        x = base[idx] + jitter * torch.randn(n, 2, generator=g)
        return PointSet(x.float(), torch.zeros(n, dtype=torch.long), 1, name)
    if name == "moons":
        x, y = _moons(n, g)
        return PointSet(x.float(), y, 2, name)
    if name == "spiral":
        x, y = _spiral(n, g)
        return PointSet(x.float(), y, 1, name)
    x, y = _mixture(n, g)
    return PointSet(x.float(), y, MIXTURE_CLASSES, name)


def conditional_data(name: str) -> bool:
    """Whether the lab trains a class-conditional model on this data set (the labelled mixture only)."""
    return name == "mixture"


# -- the noise path ------------------------------------------------------------------------------------------------
class GaussianPath:
    """The forward process of an objective as x_s = a(s) x0 + b(s) ε, with the sampling grid of levels.

    ddpm: the project's NoiseSchedule; level s = (t + 1) / T for timestep t, s = 0 the clean data (t = -1).
    flow: a = 1 - s, b = s on continuous s in [0, 1].
    """

    def __init__(self, objective: str, T: int = 1000, kind: str = "cosine") -> None:
        _check_choice("objective", objective, OBJECTIVES)
        self.objective = objective
        self.schedule = NoiseSchedule(ScheduleConfig(kind=kind, T=T)) if objective == "ddpm" else None

    def timestep(self, s: float) -> int:
        """The DDPM timestep at level s (-1 at s = 0: the clean data)."""
        return int(round(float(s) * self.schedule.T)) - 1

    def coefficients(self, s: float) -> tuple[float, float]:
        """(a, b): signal and noise coefficients at level s in [0, 1]."""
        if not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"noise level must be between 0 and 1, got {s!r}")
        if self.schedule is None:
            return 1.0 - float(s), float(s)
        ab = self.schedule.alpha_bar_at(self.timestep(s))
        return math.sqrt(ab), math.sqrt(1.0 - ab)

    def levels(self, n_steps: int) -> list[float]:
        """n_steps + 1 levels from 1 (noise) to 0 (data): DDPM's trailing timesteps (schedule.timesteps) as
        levels, or n_steps equal steps of the flow's t."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"sampling steps must be a whole number >= 1, got {n_steps!r}")
        if self.schedule is None:
            return [1.0 - i / n_steps for i in range(n_steps)] + [0.0]
        T = self.schedule.T
        return [(t + 1) / T for t in self.schedule.timesteps(n_steps)] + [0.0]

    def q_sample(self, x0: torch.Tensor, s: float, noise: torch.Tensor) -> torch.Tensor:
        """The forward process at level s: a(s) x0 + b(s) noise, (N, 2). For ddpm this is schedule.q_sample
        (Ho et al. eq. 4) at timestep t = sT - 1."""
        if self.schedule is not None and self.timestep(s) >= 0:
            t = torch.full((x0.shape[0],), self.timestep(s), dtype=torch.long)
            return self.schedule.q_sample(x0, t, noise)
        a, b = self.coefficients(s)
        return a * x0 + b * noise


# -- the model -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeometryConfig:
    """A geometry-lab model and its training. Defaults: a good fit of two moons in a few seconds on one CPU
    thread (benchmarks/geometry.py measures it): 2,000 Adam steps of 256 points at lr 1e-2 decaying to 5e-4;
    measured on the 2-core CPU, a learning rate of 3e-3 needed more than twice the steps for the same fit, and a
    batch of 1,024, weight averaging (EMA), Fourier features of x or a wider net cost more time than they gained."""

    objective: str = "ddpm"
    hidden: int = 128
    layers: int = 3
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-2
    T: int = 1000
    schedule: str = "cosine"
    p_uncond: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_range("hidden width", self.hidden, 4, 1024, integer=True)
        _check_range("hidden layers", self.layers, 1, 8, integer=True)
        _check_range("training steps", self.steps, 1, 100_000, integer=True)
        _check_range("batch size", self.batch_size, 1, 65_536, integer=True)
        _check_range("learning rate", self.lr, 1e-6, 1.0)
        _check_range("T (diffusion steps)", self.T, 2, 10_000, integer=True)
        _check_choice("schedule", self.schedule, ("linear", "cosine"))
        _check_range("p_uncond (label dropout)", self.p_uncond, 0.0, 1.0)
        _check_range("seed", self.seed, 0, 2 ** 31 - 1, integer=True)


class MLPDenoiser(nn.Module):
    """An MLP on [x, sinusoidal features of the level, class embedding]: (B, 2), (B,), (B,) -> (B, 2).

    The level s in [0, 1] goes in as 16 sines and 16 cosines of 1000 s at geometric frequencies (the
    Transformer's / DDPM's timestep embedding); the class as a learned 16-d embedding of num_classes + 1
    entries, the last being the null class (num_classes = 0: no class input at all).
    """

    def __init__(self, hidden: int = 128, layers: int = 3, num_classes: int = 0, time_features: int = 32,
                 class_dim: int = 16) -> None:
        super().__init__()
        self.num_classes, self.time_features = num_classes, time_features
        self.class_embedding = nn.Embedding(num_classes + 1, class_dim) if num_classes > 0 else None
        width = 2 + time_features + (class_dim if num_classes > 0 else 0)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        blocks.append(nn.Linear(width, 2))
        self.mlp = nn.Sequential(*blocks)

    def time_embedding(self, s: torch.Tensor) -> torch.Tensor:
        half = self.time_features // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)    # (half,)
        angles = 1000.0 * s.float()[:, None] * freqs[None, :]                                     # (B, half)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)                          # (B, 2 half)

    def forward(self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        parts = [x, self.time_embedding(s)]
        if self.class_embedding is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long)                 # the null class
            parts.append(self.class_embedding(y))
        return self.mlp(torch.cat(parts, dim=1))                                                 # (B, 2)


class GeometryModel:
    """A trained (or fresh) denoiser with its path: predictions as ε̂ or v̂, and the x̂0 / ε̂ they imply.

    num_classes: 0 for an unconditional model; else labels in [0, num_classes) and the null class num_classes.
    clip: DDPM's x̂0 is clipped to [-clip, clip] per coordinate, the 2-D analogue of the digit samplers' [-1, 1]
    (at t = T-1 of the cosine schedule x̂0 divides ε̂'s error by √ᾱ ≈ 4.5e-5); `train` sets it to 1.2 × the
    training data's largest coordinate. The flow's x̂0 = x - s v̂ needs no clip.
    """

    def __init__(self, config: GeometryConfig, num_classes: int = 0, clip: float = 4.0) -> None:
        self.config, self.num_classes, self.clip = config, num_classes, float(clip)
        self.path = GaussianPath(config.objective, config.T, config.schedule)
        with torch.random.fork_rng(devices=[]):          # the initial weights from the seed, the global RNG untouched
            torch.manual_seed(config.seed)
            self.net = MLPDenoiser(config.hidden, config.layers, num_classes)

    @property
    def objective(self) -> str:
        return self.config.objective

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @torch.no_grad()
    def predict(self, x: torch.Tensor, s: float, labels: torch.Tensor | None = None, w: float = 0.0) -> torch.Tensor:
        """The network's output at level s (ε̂ for ddpm, v̂ for flow), (N, 2), with classifier-free guidance
        out = (1 + w) out(x, y) - w out(x, ∅) (Ho & Salimans 2022, the digit model's convention) when labels are
        given to a conditional model; labels None asks the unconditional (null-class) model."""
        budget.check()                                # a learner's request stops when its time is spent
        n = x.shape[0]
        ss = torch.full((n,), float(s))
        if self.num_classes == 0 or labels is None:
            return self.net(x, ss, None)
        labels = labels.long()
        if w == 0:
            return self.net(x, ss, labels)
        null = torch.full_like(labels, self.num_classes)
        out = self.net(torch.cat([x, x]), torch.cat([ss, ss]), torch.cat([labels, null]))       # (2N, 2)
        return (1 + w) * out[:n] - w * out[n:]

    def x0_eps(self, x: torch.Tensor, s: float, labels: torch.Tensor | None = None, w: float = 0.0,
               clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂0, ε̂) at level s > 0, each (N, 2). ddpm: x̂0 from ε̂ (schedule.predict_x0_from_eps), clipped to the
        data box with ε̂ recomputed to match (as the digit samplers' DDIM does); flow: x̂0 = x - s v̂,
        ε̂ = x + (1 - s) v̂ (from x = (1 - s) x0 + s ε and v = ε - x0)."""
        out = self.predict(x, s, labels, w)
        if self.path.schedule is None:
            return x - s * out, x + (1 - s) * out
        sched, t = self.path.schedule, self.path.timestep(s)
        x0 = sched.predict_x0_from_eps(x, t, out)
        if clip:
            x0 = x0.clamp(-self.clip, self.clip)
            out = sched.predict_eps_from_x0(x, t, x0)
        return x0, out


# -- training ------------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """The model, its loss every `every` steps [(step, loss)], the seconds it trained and whether a callback
    stopped it early (after `steps_done` steps)."""

    model: GeometryModel
    losses: list = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0
    stopped: bool = False


def training_loss(model: GeometryModel, x0: torch.Tensor, y: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """One batch's loss: ddpm ‖ε̂ - ε‖² at a uniform timestep; flow ‖v̂ - (ε - x0)‖² at a uniform t.
    Labels are dropped to the null class with p_uncond (classifier-free guidance's training)."""
    n, cfg = x0.shape[0], model.config
    noise = torch.randn(x0.shape, generator=g)
    if y is not None:
        drop = torch.rand(n, generator=g) < cfg.p_uncond
        y = torch.where(drop, torch.full_like(y, model.num_classes), y)
    if model.path.schedule is None:
        s = torch.rand(n, generator=g)
        x_s = (1 - s)[:, None] * x0 + s[:, None] * noise
        target = noise - x0
    else:
        t = torch.randint(0, cfg.T, (n,), generator=g)
        x_s = model.path.schedule.q_sample(x0, t, noise)
        s = (t + 1).float() / cfg.T
        target = noise
    return (model.net(x_s, s, y) - target).pow(2).mean()


def train(config: GeometryConfig, data: PointSet, conditional: bool = False,
          progress: Callable[[int, int, float], bool | None] | None = None, every: int = 25) -> TrainResult:
    """Train a fresh model on `data` for config.steps Adam steps of config.batch_size points (drawn with
    replacement; the learning rate decays on a cosine to 5 %); deterministic given config.seed.

    conditional: condition on data.y (with label dropout p_uncond) for classifier-free guidance.
    progress(step, total, loss) is called every `every` steps and at the end; returning False stops training
    there (the model trained so far is returned, stopped=True). budget.check() runs every step, so a learner's
    deadline stops it with BudgetExceeded.
    """
    if conditional and not data.labelled:
        raise ValueError(f"data set {data.name!r} has no labels to condition on")
    clip = 1.2 * float(data.x.abs().max())
    model = GeometryModel(config, data.num_classes if conditional else 0, clip)
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, config.steps) / config.steps)))
    result = TrainResult(model)
    model.net.train()
    t0 = time.perf_counter()
    running = None
    for step in range(1, config.steps + 1):
        budget.check()
        idx = torch.randint(0, len(data.x), (config.batch_size,), generator=g)
        loss = training_loss(model, data.x[idx], data.y[idx] if conditional else None, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.9 * running + 0.1 * value
        result.steps_done = step
        if step % every == 0 or step == config.steps:
            result.losses.append((step, running))
            if progress is not None and progress(step, config.steps, running) is False:
                result.stopped = step < config.steps
                break
    result.seconds = time.perf_counter() - t0
    model.net.eval()
    return result


# -- sampling ------------------------------------------------------------------------------------------------------
def ancestral_step(a: float, b: float, a_prev: float, b_prev: float, x0: torch.Tensor, eps: torch.Tensor,
                   eta: float, z: torch.Tensor | None) -> torch.Tensor:
    """One step of the DDIM family on any Gaussian path, from level (a, b) to (a_prev, b_prev):

        x_prev = a_prev x̂0 + √(b_prev² - σ²) ε̂ + σ z,   σ = η b_prev √(1 - (a b_prev / (a_prev b))²)

    (Song et al. 2021, eq. 12 and 16, written in the path's coefficients). η = 1 gives the posterior
    q(x_prev | x_t, x0) of the path's forward process, for the cosine schedule exactly schedule.q_posterior
    (DDPM, Ho et al. eq. 6-7, strided); η = 0 the deterministic DDIM, which on the flow's straight path is Euler.
    """
    if eta == 0 or b_prev == 0:
        sigma = 0.0
    else:
        ratio = (a * b_prev) / (a_prev * b)
        sigma = eta * b_prev * math.sqrt(max(0.0, 1.0 - ratio * ratio))
    x_prev = a_prev * x0 + math.sqrt(max(0.0, b_prev * b_prev - sigma * sigma)) * eps
    if sigma > 0:
        if z is None:
            raise ValueError("a stochastic step needs a noise tensor z")
        x_prev = x_prev + sigma * z
    return x_prev


def sample(model: GeometryModel, noise: torch.Tensor, n_steps: int, sampler: str,
           labels: torch.Tensor | None = None, w: float = 0.0, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Run `sampler` for n_steps from `noise` (N, 2) (the level-1 state), returning the whole trajectory
    (n_steps + 1, N, 2): row 0 is `noise`, row k the state at model.path.levels(n_steps)[k], the last row the
    samples. Deterministic samplers (ddim, euler, heun) need no generator; stochastic ones (ddpm, ancestral)
    draw their step noise from `generator` (seed it for reproducible paths). labels (N,) and w: classifier-free
    guidance on a conditional model (labels None: the unconditional model).

    ddim   DDIM, η = 0 (Song et al. 2021)                      ddpm       DDPM ancestral (Ho et al. 2020, alg. 2)
    euler  x' = x + (s' - s) v̂(x, s)                           heun       Euler, then the average of both slopes
    ancestral  the DDPM posterior on the flow's path (ancestral_step with η = 1)
    """
    if sampler not in SAMPLERS[model.objective]:
        raise ValueError(f"sampler {sampler!r} does not fit the {model.objective} model; choose one of "
                         f"{', '.join(SAMPLERS[model.objective])}")
    if noise.dim() != 2 or noise.shape[1] != 2:
        raise ValueError(f"noise must be (N, 2), got {tuple(noise.shape)}")
    levels = model.path.levels(n_steps)
    x = noise.float()
    states = [x]
    for s, s_prev in zip(levels[:-1], levels[1:]):
        if sampler in ("euler", "heun"):
            v = model.predict(x, s, labels, w)
            x_next = x + (s_prev - s) * v
            if sampler == "heun":
                v2 = model.predict(x_next, s_prev, labels, w)
                x_next = x + (s_prev - s) * 0.5 * (v + v2)
        elif sampler == "ddpm":                                          # the schedule's maths, as the digits'
            sched, t, t_prev = model.path.schedule, model.path.timestep(s), model.path.timestep(s_prev)
            x0, _ = model.x0_eps(x, s, labels, w)
            _, _, mean, variance = sched.q_posterior(x0, x, t, t_prev)
            x_next = mean
            if t_prev >= 0:
                x_next = mean + variance.clamp(min=0).sqrt() * torch.randn(x.shape, generator=generator)
        elif sampler == "ddim":
            x0, eps = model.x0_eps(x, s, labels, w)
            x0_term, direction = model.path.schedule.ddim_terms(x0, eps, model.path.timestep(s_prev), torch.zeros(()))
            x_next = x0_term + direction
        else:                                                            # ancestral on the flow's path (η = 1)
            a, b = model.path.coefficients(s)
            a_prev, b_prev = model.path.coefficients(s_prev)
            x0, eps = model.x0_eps(x, s, labels, w)
            z = torch.randn(x.shape, generator=generator) if s_prev > 0 else None
            x_next = ancestral_step(a, b, a_prev, b_prev, x0, eps, 1.0, z)
        x = x_next.float()
        states.append(x)
    return torch.stack(states)                                              # (n_steps + 1, N, 2)


def start_noise(n: int, seed: int) -> torch.Tensor:
    """n starting points ~ N(0, I), (n, 2): the same for the same seed, whatever the sampler."""
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(int(seed)))


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """n labels cycling through 0 .. num_classes-1, (n,) int64 (equal counts when num_classes divides n)."""
    return torch.arange(n) % num_classes


# -- fields --------------------------------------------------------------------------------------------------------
def grid(extent: float = 3.0, n: int = 21) -> torch.Tensor:
    """An n × n grid over [-extent, extent]², (n², 2), row by row."""
    ticks = torch.linspace(-extent, extent, n)
    ys, xs = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def learned_field(model: GeometryModel, s: float, points: torch.Tensor, labels: torch.Tensor | None = None,
                  w: float = 0.0) -> dict:
    """What the model says at level s > 0 at each of `points` (M, 2):

    ddpm: the score ∇ log p_s(x) = -ε̂ / b(s) (Song et al. 2021, "Score-based generative modeling"): the
          direction in which the noised data get denser;
    flow: -v̂, the direction a point moves as t falls (the ODE run from noise to data).
    Returns {"points": (M, 2), "vectors": (M, 2), "name": what the vectors are}.
    """
    if not 0.0 < float(s) <= 1.0:
        raise ValueError(f"the field needs a noise level in (0, 1], got {s!r}")
    if model.objective == "flow":
        return {"points": points, "vectors": -model.predict(points, s, labels, w), "name": "−v̂ (reverse velocity)"}
    _, b = model.path.coefficients(s)
    eps = model.predict(points, s, labels, w)
    return {"points": points, "vectors": -eps / b, "name": "score ∇log p_t = −ε̂ / √(1−ᾱ_t)"}


# -- fit figures ---------------------------------------------------------------------------------------------------
MMD_BANDWIDTHS = (0.5, 0.25, 0.125, 0.0625)   # data units: from the gaps between parts down to below the
#                                               moons' thickness (~0.085); each half the last, see _kernel_mean
GOOD_FIT = 1.5                             # "a good fit": samples within 1.5x the distance of a fresh draw of the data


def _kernel_mean(a: torch.Tensor, b: torch.Tensor) -> float:
    """mean over all pairs of sum_h exp(-|a_i - b_j|² / 2h²) for h in MMD_BANDWIDTHS.

    Each bandwidth is half the previous one, so each kernel is the previous one to the 4th power: one exp and
    two squarings per bandwidth instead of an exp each (an exp of 10^6 values costs ~17 ms on the 2-core CPU)."""
    d2 = ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)   # (N, M) squared distances
    e = torch.exp(-d2 / (2 * MMD_BANDWIDTHS[0] ** 2))
    total = float(e.mean())
    for _ in MMD_BANDWIDTHS[1:]:
        e = e * e
        e = e * e
        total += float(e.mean())
    return total


def mmd(a: torch.Tensor, b: torch.Tensor) -> float:
    """The maximum mean discrepancy between point sets a (N, 2) and b (M, 2) (Gretton et al. 2012), with the sum of
    Gaussian kernels exp(-|x - x'|² / 2h²) over MMD_BANDWIDTHS h: the distance between the two sets' kernel mean
    embeddings, √(mean k(a, a) + mean k(b, b) - 2 mean k(a, b)) (the biased estimate, never negative). 0 for
    identical sets; two finite draws of one distribution stay above 0 (FitReference's floor). The small
    bandwidths see blur and stray points, the large ones misplaced mass."""
    _check_points(a, b)
    a, b = a.float(), b.float()
    return _mmd(_kernel_mean(a, a), _kernel_mean(b, b), _kernel_mean(a, b))


def _mmd(kaa: float, kbb: float, kab: float) -> float:
    return math.sqrt(max(0.0, kaa + kbb - 2 * kab))


def _check_points(*sets: torch.Tensor) -> None:
    for p in sets:
        if p.dim() != 2 or p.shape[1] != 2:
            raise ValueError(f"point sets must be (N, 2), got {tuple(p.shape)}")


class FitReference:
    """Held-out data (M, 2) and a fresh draw of the data (the floor), against which samples are measured; what
    does not depend on the samples is computed once."""

    def __init__(self, heldout: torch.Tensor, fresh: torch.Tensor) -> None:
        _check_points(heldout, fresh)
        self.heldout = heldout.float()
        self._kbb = _kernel_mean(self.heldout, self.heldout)
        self.floor = self.distance(fresh)

    def distance(self, samples: torch.Tensor) -> float:
        """mmd(samples, heldout)."""
        _check_points(samples)
        s = samples.float()
        return _mmd(_kernel_mean(s, s), self._kbb, _kernel_mean(s, self.heldout))

    def report(self, samples: torch.Tensor) -> dict:
        """{"distance": mmd(samples, heldout); "floor": mmd(fresh, heldout), a fresh draw of the data itself, as
        close as any model can get at this sample size (use as many samples as the fresh draw has points);
        "ratio": distance / floor (1 = as close as real data); "good": ratio <= GOOD_FIT}."""
        d = self.distance(samples)
        ratio = d / max(self.floor, 1e-12)
        return {"distance": d, "floor": self.floor, "ratio": ratio, "good": ratio <= GOOD_FIT}


def fit_report(samples: torch.Tensor, heldout: torch.Tensor, fresh: torch.Tensor) -> dict:
    """FitReference(heldout, fresh).report(samples): distance, floor, ratio and the good-fit verdict."""
    return FitReference(heldout, fresh).report(samples)


def class_spread(points: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class, the root-mean-square distance of its points to their mean (nan for an empty class)."""
    out = []
    for c in range(num_classes):
        p = points[labels == c]
        out.append(float((p - p.mean(0)).pow(2).sum(1).mean().sqrt()) if len(p) else float("nan"))
    return out


def _knn_agreement(points: torch.Tensor, labels: torch.Tensor, data: PointSet, k: int, skip_self: bool) -> float:
    """Mean share of each point's k nearest data points whose class is the point's own."""
    d = torch.cdist(points.float(), data.x)                                               # (N, M)
    idx = d.topk(k + int(skip_self), dim=1, largest=False).indices[:, int(skip_self):]    # (N, k)
    return float((data.y[idx] == labels[:, None]).float().mean())


def guidance_report(samples: torch.Tensor, labels: torch.Tensor, data: PointSet, k: int = 10) -> dict:
    """Diversity and class clarity of class-conditional samples (N, 2) with their asked labels (N,), against
    labelled data:

    spread: per class, the samples' RMS spread / the data's (1 = as diverse as the data, below 1 = narrower);
    mean_spread: its mean over classes;
    agreement: the mean share of a sample's k nearest data points that are of its asked class (a nearest-neighbour
    estimate of p(class | x): 1 where only that class lives); data_agreement: the same for the data's own points
    (each point's k nearest other points).
    """
    n_cls = data.num_classes
    ratio = [s / d for s, d in zip(class_spread(samples, labels, n_cls), class_spread(data.x, data.y, n_cls))]
    return {"spread": ratio, "mean_spread": sum(ratio) / n_cls,
            "agreement": _knn_agreement(samples, labels, data, k, False),
            "data_agreement": _knn_agreement(data.x, data.y, data, k, True)}


def path_stretch(trajectory: torch.Tensor) -> float:
    """How curved the paths are: the particles' total path length / their total straight-line distance from
    start to end (1 for straight paths; a ratio of sums, so particles that barely move do not dominate).
    trajectory (S + 1, N, 2)."""
    length = (trajectory[1:] - trajectory[:-1]).norm(dim=2).sum()
    chord = (trajectory[-1] - trajectory[0]).norm(dim=1).sum()
    return float(length / chord.clamp(min=1e-12))
