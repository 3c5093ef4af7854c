"""The peer the bench compares against: the Hugging Face course's class-conditioned MNIST U-Net and recipe.

Needs diffusers (requirements-test.txt); building a PeerUNet without it raises ImportError, which the bench
reports as "peer skipped".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from engine.config import SampleConfig, ScheduleConfig, TrainConfig
from engine.schedule import NoiseSchedule


@dataclass(frozen=True)
class PeerConfig:
    """The fields the engine reads from a denoiser's `cfg` (train_step, the samplers), stated for the peer.

    The peer is not one of our ModelConfigs, so it gets its own small config instead. Its class input has no
    null row: the recipe drops no labels (p_uncond = 0) and samples unguided, and its forward maps the null
    index 10 to class 9, so the null class below is only ever an index, never learned.
    """

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    class_embedding: bool = True
    style_dim: int = 0

    @property
    def null_class(self) -> int:
        return self.num_classes


class PeerUNet(nn.Module):
    """The HF course's ClassConditionedUnet: class embedding (size 4) broadcast as extra input channels."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.cfg = PeerConfig()
        self.class_emb = nn.Embedding(10, 4)
        self.model = UNet2DModel(sample_size=28, in_channels=1 + 4, out_channels=1, layers_per_block=2,
                                 block_out_channels=(32, 64, 64),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))

    def forward(self, x, t, y, style=None):
        c = self.class_emb(y.clamp(max=9))[:, :, None, None].expand(-1, -1, *x.shape[2:])   # (B, 4, 28, 28)
        return self.model(torch.cat([x, c], 1), t).sample


@dataclass(frozen=True)
class PeerRecipe:
    """The peer's model, schedule, training and sampling settings, as the course trains and samples it."""

    model: PeerUNet
    schedule: NoiseSchedule
    train: TrainConfig
    sample: SampleConfig


def peer_recipe() -> PeerRecipe:
    """The HF course's class-conditioned MNIST recipe: its U-Net, a linear schedule of 1,000 steps, Adam at 1e-3
    (our AdamW with no weight decay), plain MSE, batch 128, no EMA, no label dropout (so it samples unguided),
    no gradient clipping."""
    train = TrainConfig(batch_size=128, lr=1e-3, warmup_steps=0, lr_schedule="constant", min_snr_gamma=0.0,
                        p_uncond=0.0, grad_clip=1000.0)
    return PeerRecipe(PeerUNet(), NoiseSchedule(ScheduleConfig(kind="linear", T=1000)), train,
                      SampleConfig(sampler="ddim", steps=25, guidance=0.0))
