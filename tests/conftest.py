"""Shared fixtures. The default run needs no network and no GPU: offline flags are set before any import."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Worksheet answers typed by in-process page tests go to a temporary folder, never the repository's workbooks/
os.environ.setdefault("DIFFUSION_LAB_WORKBOOKS", __import__("tempfile").mkdtemp(prefix="diffusion-lab-workbooks-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # two cores: keep one for whatever else runs (and tests stay deterministic)

from engine.config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig  # noqa: E402
from engine.unet import build_model  # noqa: E402

TINY_MODEL = ModelConfig(base_channels=8, channel_mults=(1, 2), attention=True, num_heads=2)
TINY_SCHEDULE = ScheduleConfig(kind="cosine", T=50)
TINY_TRAIN = TrainConfig(steps=30, batch_size=16, lr=2e-3, warmup_steps=2, checkpoint_every=10, sample_every=10,
                         log_every=5)
TINY_SAMPLE = SampleConfig(sampler="ddim", steps=5, guidance=1.0)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    # The zero-initialised output layer makes a fresh model predict eps = 0 exactly; perturb it so
    # tests see a non-trivial network.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()




@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs folder holding one tiny run ("tiny", 4 steps, a checkpoint): what the page tests pick as the model."""
    from engine.training.run import TrainingRun

    root = tmp_path_factory.mktemp("runs")
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=4), TINY_SAMPLE, root / "tiny")
    for _ in range(4):
        run.step()
    run.save()
    return root


@pytest.fixture
def framed_app(runs_root, monkeypatch):
    """AppTest of dashboard.py that runs every page inside the dashboard's frame (its sidebar: model picker, present
    mode, pinning), on the tiny run.

    AppTest resets Streamlit's legacy pages-folder flag before every run, so from the second run on it would run a
    page script alone, without the frame; a PagesManager that keeps the flag off (as ui/__init__.py does for the real
    server) keeps every run framed."""
    from pathlib import Path

    import streamlit as st
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    import ui.resources as res

    class Framed(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", Framed)
    monkeypatch.setattr(res, "RUNS_ROOT", runs_root)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboard.py"), default_timeout=120)
    at.query_params["model"] = "tiny"
    yield at
    res.get_trainer().stop(wait=30)
    st.cache_resource.clear()


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero weights everywhere (the zero-initialised layers of a fresh model hide differences)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="session")
def scorer():
    """The shipped digit-CLIP (the CLIP tests share one load)."""
    from engine.clip_eval import load_digit_clip

    return load_digit_clip()


@pytest.fixture(scope="session")
def held():
    """The 1,000 held-out digits of mnist-5k."""
    from engine.data import load

    return load("mnist-5k")[1]
