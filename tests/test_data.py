import struct
import time

import numpy as np
import pytest
import torch

from engine import data


def test_mnist5k_split_is_fixed_and_balanced():
    train, held = data.load("mnist-5k")
    assert train.images.shape == (4000, 1, 28, 28) and held.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.images.min()) == -1.0 and float(train.images.max()) == 1.0
    assert torch.bincount(held.labels).tolist() == [100] * 10
    # no digit in both splits
    tr = {bytes(x.numpy().tobytes()) for x in ((train.images + 1) * 127.5).round().to(torch.uint8)}
    he = [bytes(x.numpy().tobytes()) for x in ((held.images + 1) * 127.5).round().to(torch.uint8)]
    assert sum(h in tr for h in he) <= 2       # the 5k set has at most a stray duplicate


def test_batches_cover_an_epoch_and_resume_identically():
    train, _ = data.load("mnist-5k")
    a = data.BatchSampler(train, 1000, seed=3)
    seen = torch.cat([a.next()[1] for _ in range(4)])
    assert torch.bincount(seen).sum() == 4000 and torch.equal(torch.bincount(seen), torch.bincount(train.labels))
    b = data.BatchSampler(train, 1000, seed=3)
    for _ in range(6):
        b.next()
    c = data.BatchSampler(train, 1000, seed=3)
    c.skip_to(6)
    assert torch.equal(b.next()[0], c.next()[0])


def _write_idx(root, n=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labs = np.arange(n, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labs.tobytes())


def test_full_mnist_from_local_root(tmp_path):
    _write_idx(tmp_path)
    train, held = data.load("mnist", root=tmp_path, download=False)
    assert train.images.shape == (20, 1, 28, 28) and held.labels.dtype == torch.int64
    assert -1.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0


def test_missing_dataset_fails_fast_naming_the_alternative(tmp_path, monkeypatch):
    with pytest.raises(data.DataUnavailable, match="mnist-5k"):
        data.load("mnist", root=tmp_path, download=False)
    monkeypatch.setattr(data, "network_reachable", lambda *a, **k: False)
    t0 = time.time()
    with pytest.raises(data.DataUnavailable, match="cannot be reached.*mnist-5k"):
        data.load("fashion-mnist", root=tmp_path, download=True)
    assert time.time() - t0 < 10


def test_network_probe_answers_false_quickly_on_loopback():
    import socket

    with socket.socket() as sock:            # a port that was free a moment ago: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.time()
    assert data.network_reachable("127.0.0.1", port, timeout=0.5) is False
    assert time.time() - t0 < 5
