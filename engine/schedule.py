"""The forward (noising) process of a DDPM as a plain object: no network, no model.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"):
    beta_t        variance added at step t                      t = 0 .. T-1 (diffusers' indexing)
    alpha_t       = 1 - beta_t
    alpha_bar_t   = prod_{s<=t} alpha_s                           (how much signal survives to step t)
    q(x_t | x_0)  = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                       (eq. 4)
    SNR(t)        = alpha_bar_t / (1 - alpha_bar_t)

The "flow" kind is flow matching's linear path x = (1 - s) x0 + s eps (Lipman et al. 2023; Liu et al. 2022,
"rectified flow") with s_t = (t + 1) / T. Every such path is a rescaling of a variance-preserving one:
x / sqrt((1 - s)^2 + s^2) has alpha_bar = (1 - s)^2 / ((1 - s)^2 + s^2), so a flow model's state is kept in
those units (its network sees unit-variance inputs, the "c_in" preconditioning of Karras et al. 2022) and every
formula below holds for it unchanged. What differs is the network's output: a velocity v = eps - x0, turned
into a noise prediction by `eps_from_output`, and trained towards by `training_target`.

All tables are float64 for exactness and converted to the caller's dtype/device on use.
"""
from __future__ import annotations

import math

import torch

from .config import ScheduleConfig


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear beta schedule of Ho et al. 2020 (sec. 4), scaled so T=1000 gives 1e-4 .. 0.02."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal 2021 (eq. 17), betas capped at 0.999 (diffusers' squaredcos_cap_v2)."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


FLOW_S_MAX = 1 - 1e-4      # the flow path's last level: s = 1 would be alpha_bar = 0, where x0 = (x - ...) / 0


def flow_alpha_bar(T: int) -> torch.Tensor:
    """alpha_bar of the linear path x = (1 - s) x0 + s eps at s_t = (t + 1) / T (the last capped at FLOW_S_MAX),
    as the variance-preserving schedule it rescales to: (1 - s)^2 / ((1 - s)^2 + s^2)."""
    s = (torch.arange(1, T + 1, dtype=torch.float64) / T).clamp(max=FLOW_S_MAX)
    return (1 - s) ** 2 / ((1 - s) ** 2 + s ** 2)


class NoiseSchedule:
    """Precomputed tables of one schedule plus the closed-form maths that uses them.

    Shapes: `t` is an int64 tensor (B,) of timesteps in [0, T); images are (B, C, H, W) in [-1, 1].
    """

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        c = self.config
        if c.kind == "linear":
            self.betas = linear_betas(c.T, c.beta_start, c.beta_end)
        elif c.kind == "flow":
            ab = flow_alpha_bar(c.T)
            self.betas = 1 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        else:
            self.betas = cosine_betas(c.T)
        self.T = c.T
        self.alphas = 1.0 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)                                   # (T,)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # Posterior variance of the full chain, beta-tilde_t (Ho et al. eq. 7), for plots and tests; samplers call
        # q_posterior, which also handles strided chains.
        self.posterior_variance = self.betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}

    # -- helpers -------------------------------------------------------------------------------------------------
    def _table(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Gather table[name][t] as (B, 1, 1, 1) in like's dtype/device (tables cached per dtype/device)."""
        key = (like.dtype, like.device)
        tables = self._cache.get(key)
        if tables is None:
            tables = {}
            self._cache[key] = tables
        if name not in tables:
            tables[name] = getattr(self, name).to(device=like.device, dtype=like.dtype)
        return tables[name][t].view(-1, *([1] * (like.dim() - 1)))

    def check_t(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"timestep must be in [0, {self.T - 1}], got {t.tolist()}")
        return t

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) for every t, (T,) float64."""
        return self.alpha_bar / (1 - self.alpha_bar)

    def snr_db(self) -> torch.Tensor:
        return 10 * torch.log10(self.snr)

    # -- the forward process --------------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise   (eq. 4).

        x0: (B, C, H, W); t: (B,) int; noise: optional (B, C, H, W) standard normal (drawn if None).
        """
        t = self.check_t(t).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return self._table("alpha_bar", t, x0).sqrt() * x0 + (1 - self._table("alpha_bar", t, x0)).sqrt() * noise

    # alias with the diffusers name, so code and tests read naturally against DDPMScheduler.add_noise
    add_noise = q_sample

    # -- what the network predicts -----------------------------------------------------------------------------------
    @property
    def predicts_velocity(self) -> bool:
        """True for the flow kind: its network outputs the velocity v = eps - x0 of the linear path."""
        return self.config.kind == "flow"

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network learns to output for x_t = q_sample(x0, t, noise): the noise (DDPM, Ho et al. 2020,
        algorithm 1), or the velocity noise - x0 of the linear path (flow matching, Lipman et al. 2023, eq. 23)."""
        return noise - x0 if self.predicts_velocity else noise

    def flow_coordinates(self, t: int) -> tuple[float, float]:
        """(k, s): where x_t sits on the linear path, k x_t = (1 - s) x0 + s eps. Any schedule has them
        (k = 1 / (sqrt(alpha_bar) + sqrt(1 - alpha_bar)), s = k sqrt(1 - alpha_bar)); for the flow kind,
        s = (t + 1) / T. t = -1, the clean image: (1, 0)."""
        ab = self.alpha_bar_at(t)
        k = 1.0 / (math.sqrt(ab) + math.sqrt(1 - ab))
        return k, k * math.sqrt(1 - ab)

    def eps_from_output(self, x_t: torch.Tensor, t: "int | torch.Tensor", out: torch.Tensor) -> torch.Tensor:
        """The network's output as a noise prediction: the output itself for an eps-model; for a velocity model
        eps = k x_t + (1 - s) v (the path's point plus what remains of the way to the noise)."""
        if not self.predicts_velocity:
            return out
        ab = self._ab(t, x_t)
        k = 1 / (ab.sqrt() + (1 - ab).sqrt())
        return k * x_t + (1 - k * (1 - ab).sqrt()) * out

    # -- the reverse-process maths, once: every sampler, application and guidance method calls these ---------
    # t may be an int (one timestep for the whole batch, as samplers use it; t = -1 means "the clean image",
    # alpha_bar = 1) or a (B,) int64 tensor (one timestep per image, as training and introspection use it).
    def alpha_bar_at(self, t: int) -> float:
        """alpha_bar_t as a float; alpha_bar_{-1} = 1 (the clean image, where every reverse chain ends)."""
        if not isinstance(t, int) or not -1 <= t < self.T:
            raise ValueError(f"timestep must be an int in [-1, {self.T - 1}], got {t!r}")
        return 1.0 if t < 0 else float(self.alpha_bar[t])

    def _ab(self, t: "int | torch.Tensor", like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at t in like's dtype / device, shaped to broadcast against (B, C, H, W)."""
        if isinstance(t, torch.Tensor):
            return self._table("alpha_bar", self.check_t(t).to(like.device), like)
        return torch.tensor(self.alpha_bar_at(t), dtype=like.dtype, device=like.device)

    def predict_x0_from_eps(self, x_t: torch.Tensor, t: "int | torch.Tensor", eps: torch.Tensor) -> torch.Tensor:
        """x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)   (Ho et al. eq. 4 solved for x0; eq. 15).

        Meaningless where alpha_bar_t is tiny: at t = T-1 of the cosine schedule (T = 1000) it divides by ~5e-5, so the
        first steps' x0_pred is amplified noise (samplers clip it to [-1, 1])."""
        ab = self._ab(t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: "int | torch.Tensor", x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t): the noise consistent with x0 (eq. 4)."""
        ab = self._ab(t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_{t_prev} | x_t, x0) = N(c0 x0 + ct x_t, var)   (Ho et al. eq. 6-7).

        t_prev defaults to t - 1 (the paper's chain). A strided chain (t_prev < t - 1) uses that chain's own
        beta' = 1 - alpha_bar_t / alpha_bar_{t_prev}, as diffusers' DDPMScheduler does.
        Returns (x0 term c0 * x0, x_t term ct * x_t, mean, variance) with variance a 0-dim tensor.
        """
        t_prev = t - 1 if t_prev is None else t_prev
        a_t, a_prev = self._ab(t, x_t), self._ab(t_prev, x_t)
        beta = 1 - a_t / a_prev                                                  # beta of the (strided) step
        x0_term = (a_prev.sqrt() * beta / (1 - a_t)) * x0
        xt_term = ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
        variance = (1 - a_prev) / (1 - a_t) * beta                               # beta-tilde (eq. 7)
        return x0_term, xt_term, x0_term + xt_term, variance

    def ddim_sigma(self, t: int, t_prev: int, eta: float, like: torch.Tensor) -> torch.Tensor:
        """sigma_t(eta) = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))   (Song et al. 2021, eq. 16).

        eta = 1 gives the DDPM posterior's standard deviation; eta = 0 the deterministic DDIM."""
        a_t, a_prev = self._ab(t, like), self._ab(t_prev, like)
        return eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()

    def ddim_terms(self, x0: torch.Tensor, eps: torch.Tensor, t_prev: int, sigma: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two deterministic terms of the DDIM update (Song et al. 2021, eq. 12):
        "predicted x0" sqrt(a_prev) x0 and "direction pointing to x_t" sqrt(1 - a_prev - sigma^2) eps.
        x_{t_prev} = their sum + sigma * z."""
        a_prev = self._ab(t_prev, x0)
        return a_prev.sqrt() * x0, (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps

    def q_jump(self, x_s: torch.Tensor, s: int, t: int, noise: torch.Tensor) -> torch.Tensor:
        """Forward from level s to a noisier level t > s: x_t ~ q(x_t | x_s) = N(sqrt(a_t / a_s) x_s, (1 - a_t / a_s) I)
        (the product of the forward steps between them; RePaint's "jump back")."""
        ratio = self._ab(t, x_s) / self._ab(s, x_s)
        return ratio.sqrt() * x_s + (1 - ratio).sqrt() * noise

    def signal_noise_coefficients(self, t: int) -> tuple[float, float]:
        """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) as plain floats: the numbers in the closed form."""
        ab = float(self.alpha_bar[int(t)])
        return math.sqrt(ab), math.sqrt(1 - ab)

    def timesteps(self, steps: int) -> list[int]:
        """`steps` timesteps from T-1 down to 0 for a strided sampler, with "trailing" spacing.

        Trailing spacing (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
        table 2) always starts at t = T-1, where the chain is pure noise, unlike diffusers' default "leading"
        spacing, which would start a 25-step DDIM at t = 960.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.T:
            raise ValueError(f"sampling steps must be between 1 and T={self.T}, got {steps!r}")
        ratio = self.T / steps
        return [int(round(self.T - i * ratio)) - 1 for i in range(steps)]


def noising_strip(schedule: NoiseSchedule, x0: torch.Tensor, fractions: list[float],
                  noise: torch.Tensor) -> torch.Tensor:
    """The same digit and the same noise at each fraction of the chain (0 = x_0, 1 = t = T-1).

    x0, noise: (1, C, H, W) -> (len(fractions), C, H, W). Using one noise draw shows how the *amount* of
    noise grows with t rather than a different random pattern per frame.
    """
    ts = [fraction_to_t(schedule, f) for f in fractions]
    frames = []
    for f, t in zip(fractions, ts):
        frames.append(x0[0] if f == 0 else schedule.q_sample(x0, torch.tensor([t]), noise)[0])
    return torch.stack(frames)


def fraction_to_t(schedule: NoiseSchedule, fraction: float) -> int:
    """Fraction of the chain in [0, 1] -> timestep index in [0, T-1]; a fraction outside [0, 1] is an error."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction of the chain must be between 0 and 1, got {fraction!r}")
    return int(round(fraction * (schedule.T - 1)))


def schedule_curves(schedule: NoiseSchedule) -> dict[str, "object"]:
    """Numpy arrays over t for plots: beta_t, alpha_bar_t, SNR in dB, signal and noise coefficients."""
    return {"beta_t": schedule.betas.numpy(), "alpha_bar_t": schedule.alpha_bar.numpy(),
            "SNR (dB)": schedule.snr_db().numpy(), "sqrt(alpha_bar_t)": schedule.alpha_bar.sqrt().numpy(),
            "sqrt(1 - alpha_bar_t)": (1 - schedule.alpha_bar).sqrt().numpy()}
