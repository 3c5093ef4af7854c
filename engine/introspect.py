"""Looking inside a denoiser for the Architecture page: feature maps, embeddings, the context mask, and what
the model predicts when told the right or a wrong timestep."""
from __future__ import annotations

import torch

from .schedule import NoiseSchedule
from .unet import sinusoidal_embedding


@torch.inference_mode()
def feature_maps(model: torch.nn.Module, x_t: torch.Tensor, t: int, label: int, max_channels: int = 8) -> dict:
    """{level name: (k, H, W) float tensor} — the first `max_channels` channels of each level's output
    for one image x_t (1, 1, 28, 28), each channel scaled to [0, 1] for display."""
    capture: dict = {}
    model(x_t, torch.tensor([t]), torch.tensor([label]), capture=capture)
    out = {}
    for name, h in capture.items():
        fm = h[0, :max_channels]                                       # (k, H, W)
        lo = fm.amin(dim=(1, 2), keepdim=True)
        hi = fm.amax(dim=(1, 2), keepdim=True)
        out[name] = (fm - lo) / (hi - lo + 1e-8)
    return out


def time_embedding_table(T: int, dim: int, points: int = 200) -> tuple[list[int], torch.Tensor]:
    """The sinusoidal features the model sees for t (before its MLP): (points, dim), and the t values."""
    ts = torch.linspace(0, T - 1, min(points, T)).round().long()
    return ts.tolist(), sinusoidal_embedding(ts, dim)


def class_embedding_table(model: torch.nn.Module) -> torch.Tensor | None:
    """(11, E) learned class vectors (row 10 = the null class), or None for a model without them."""
    emb = getattr(getattr(model, "cond", None), "class_emb", None)
    return None if emb is None else emb.weight.detach().cpu()


def context_mask(labels: torch.Tensor, p_uncond: float, generator: torch.Generator, null_class: int = 10
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dropped mask (B,) bool, labels the model sees) — the same draw as training's label dropout."""
    drop = torch.rand(labels.shape[0], generator=generator) < p_uncond
    return drop, torch.where(drop, torch.full_like(labels, null_class), labels)


@torch.inference_mode()
def told_t_prediction(model: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, label: int, t_true: int,
                      t_told: int, noise: torch.Tensor) -> dict:
    """Noise x0 to t_true, then ask the model with t_true and with t_told. Returns x_t and both x0 guesses,
    with their mean squared errors against the real x0 (lower = better)."""
    x_t = schedule.q_sample(x0, torch.tensor([t_true]), noise)
    y = torch.tensor([label])
    out = {"x_t": x_t}
    for name, t in (("right", t_true), ("wrong", t_told)):
        eps = schedule.eps_from_output(x_t, torch.tensor([t]), model(x_t, torch.tensor([t]), y))
        # x0 from eps must use the true noise level: the point is what the network *predicts*
        x0_pred = schedule.predict_x0_from_eps(x_t, torch.tensor([t_true]), eps).clamp(-1, 1)
        out[name] = x0_pred
        out[f"{name}_mse"] = float(((x0_pred - x0) ** 2).mean())
    return out
