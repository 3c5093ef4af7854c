"""engine/devices.py: the device choice and the single-process defaults of the torchrun helpers.
(Two real processes under torchrun are in test_distributed.py.)"""
import pytest
import torch

from engine.devices import init_distributed, pick_device, replicas_identical


def test_auto_picks_what_exists_and_cpu_is_always_there(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("auto") == torch.device("cuda", 1)               # under torchrun: this process's GPU


def test_a_missing_or_unknown_device_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(RuntimeError, match="unknown device 'tpu'"):
        pick_device("tpu")


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == (0, 1)
    assert not torch.distributed.is_initialized()
    assert replicas_identical(torch.nn.Linear(2, 2))
