"""Content-addressed on-disk sample cache.

key = sha256 of (checkpoint weights sha256, sampler config, guidance, seeds, classes); value = the sampled
tensors (float32, safetensors). A hit returns exactly the tensors that were computed; entries are written
atomically (temp + rename), a corrupt entry is ignored and recomputed, the folder is kept under a byte
budget by evicting the least recently used entries, and concurrent requests for one key compute once.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "cache"


def cache_key(**parts) -> str:
    """Stable hex key of JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class SampleCache:
    def __init__(self, root: str | Path = DEFAULT_CACHE_DIR, max_bytes: int = 200 * 2**20,
                 read_only: list[str | Path] = ()) -> None:
        self.root = Path(root)
        self.read_only = [Path(p) for p in read_only]   # shipped precomputed entries: read, never evicted
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The cached tensors, or None when missing or unreadable (a corrupt entry is deleted)."""
        path = self._path(key)
        if not path.exists():
            for ro in self.read_only:
                shipped = ro / path.name
                if shipped.exists():
                    try:
                        return load_file(str(shipped))
                    except (SafetensorError, OSError, ValueError, RuntimeError):
                        return None
            return None
        try:
            value = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError):
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)                      # mark as recently used for LRU eviction
        except OSError:
            pass
        return value

    def put(self, key: str, value: dict[str, torch.Tensor]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in value.items()}, tmp)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._evict()

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Return the cached value or compute, store and return it; one computation per key at a time."""
        value = self.get(key)
        if value is not None:
            self.hits += 1
            return value
        with self._lock(key):
            value = self.get(key)               # another thread may have finished it while we waited
            if value is not None:
                self.hits += 1
                return value
            self.misses += 1
            value = compute()
            self.put(key, value)
            return value

    def _evict(self) -> None:
        entries = []
        for p in self.root.glob("*.safetensors"):
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(e[1] for e in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
