import threading
import time

import torch

from engine.cache import SampleCache, cache_key


def test_hit_returns_exactly_the_same_tensors(tmp_path):
    c = SampleCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"images": torch.randn(4, 1, 28, 28)}

    k = cache_key(weights="abc", seeds=[1, 2])
    a = c.get_or_compute(k, compute)["images"]
    b = c.get_or_compute(k, compute)["images"]
    assert torch.equal(a, b) and len(calls) == 1 and c.hits == 1 and c.misses == 1
    assert cache_key(seeds=[1, 2], weights="abc") == k and cache_key(weights="abc", seeds=[2, 1]) != k


def test_corrupt_entry_is_recomputed(tmp_path):
    c = SampleCache(tmp_path)
    k = cache_key(x=1)
    c.put(k, {"images": torch.zeros(2)})
    (tmp_path / f"{k}.safetensors").write_bytes(b"\x00garbage")
    assert c.get(k) is None
    out = c.get_or_compute(k, lambda: {"images": torch.ones(2)})
    assert torch.equal(out["images"], torch.ones(2))


def test_lru_eviction_keeps_under_budget(tmp_path):
    c = SampleCache(tmp_path, max_bytes=3 * 4200)
    for i in range(6):
        c.put(cache_key(i=i), {"images": torch.zeros(1000)})
        time.sleep(0.01)
    c.get(cache_key(i=0))  # evicted already
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) <= 3 and c.get(cache_key(i=5)) is not None and c.get(cache_key(i=0)) is None


def test_concurrent_requests_compute_once(tmp_path):
    c = SampleCache(tmp_path)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return {"images": torch.arange(5.0)}

    results = []
    threads = [threading.Thread(target=lambda: results.append(c.get_or_compute("k" * 64, slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(torch.equal(r["images"], torch.arange(5.0)) for r in results)


def test_read_only_shipped_entries_are_used_and_never_evicted(tmp_path):
    shipped = SampleCache(tmp_path / "shipped")
    k = cache_key(model="m", seeds=[0])
    shipped.put(k, {"images": torch.ones(3)})
    c = SampleCache(tmp_path / "live", max_bytes=1, read_only=[tmp_path / "shipped"])
    assert torch.equal(c.get_or_compute(k, lambda: {"images": torch.zeros(3)})["images"], torch.ones(3))
    c.put(cache_key(other=1), {"images": torch.zeros(100)})        # over budget: evicts live entries only
    assert (tmp_path / "shipped" / f"{k}.safetensors").exists()
