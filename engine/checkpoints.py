"""Checkpoints as folders of safetensors + JSON; never pickle.

    <dir>/weights.safetensors   model.* and ema.* tensors (EMA weights are what we sample from)
    <dir>/optimizer.safetensors optional: AdamW moments, for exact resume
    <dir>/config.json           {"kind", "model", "schedule", "train", "recommended"}: everything to rebuild it
    <dir>/meta.json             step, data set, sha256 of each weights file, metrics, the command, wall time

A checkpoint folder is written complete under a temporary name and renamed into place (atomic on POSIX),
so a crash never leaves a half-written checkpoint where a reader could find it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
from .accel import to_device
from .unet import build_model

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
CONFIG = "config.json"
META = "meta.json"
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ and torch.save's zip container


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says which file and why."""


@dataclass
class Checkpoint:
    """A loaded diffusion model: its EMA network (eval mode), configs and metadata."""

    path: Path
    model: torch.nn.Module
    model_config: ModelConfig
    schedule_config: ScheduleConfig
    train_config: TrainConfig | None
    recommended: SampleConfig
    meta: dict[str, Any]
    raw_model: torch.nn.Module | None = None  # the non-EMA weights, for resuming training
    optimizer_state: dict[str, torch.Tensor] | None = None

    @property
    def sha256(self) -> str:
        return self.meta.get("sha256", {}).get(WEIGHTS, "")

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def name(self) -> str:
        return self.path.name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON to `path` via a temp file in the same folder + fsync + os.replace (indent=None: compact)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent, sort_keys=True, separators=None if indent else (",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                        # mkstemp makes 0600; reports and evidence are shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer state dict into safetensors-storable tensors + JSON-able hyperparameters."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": groups["param_groups"]})
    for group in opt.param_groups:        # moments in their parameter's memory layout (channels-last on a CPU)
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p).copy_(v)


def write_folder(path: str | Path, tensors: dict[str, dict[str, torch.Tensor]], config: dict[str, Any],
                 meta: dict[str, Any], *, overwrite: bool = False, keep_sidecars: bool = False) -> Path:
    """Write a model folder atomically: one safetensors file per entry of `tensors`, config.json, meta.json.

    meta.json gets the sha256 of every weights file. With overwrite=True an existing folder is replaced: the
    new one is completed first, the old one moved aside, the new one renamed in, the old one deleted; a crash
    in between leaves one complete copy, which `recover_checkpoint` puts back. keep_sidecars copies the old
    folder's other files (metrics, snapshots, reports) into the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} already exists; choose another name or pass overwrite")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        hashes = {}
        for filename, named in tensors.items():
            save_file(named, str(tmp / filename), metadata={"format": "diffusion-lab"})
            hashes[filename] = sha256_file(tmp / filename)
        full_meta = {"sha256": hashes, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
        for name, data in ((CONFIG, config), (META, full_meta)):
            with open(tmp / name, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True)
        if path.exists() and keep_sidecars:
            managed = set(tensors) | {WEIGHTS, OPTIMIZER, CONFIG, META}
            for item in path.iterdir():
                if item.name in managed or item.name.startswith("."):
                    continue
                if item.is_dir():
                    shutil.copytree(item, tmp / item.name)
                else:
                    shutil.copy2(item, tmp / item.name)
        os.chmod(tmp, 0o755)                                   # mkdtemp makes 0700; checkpoints are shared
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, 0o644)
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
        return path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def state_tensors(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module's state dict as independent, contiguous CPU tensors (what safetensors can store)."""
    return {f"{prefix}{k}": v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, ema_model: torch.nn.Module | None,
                    model_config: ModelConfig, schedule_config: ScheduleConfig, train_config: TrainConfig | None,
                    recommended: SampleConfig | None = None, step: int = 0, meta: dict[str, Any] | None = None,
                    optimizer: torch.optim.Optimizer | None = None, overwrite: bool = False,
                    keep_sidecars: bool = False, include_raw: bool = True) -> Path:
    """Write a diffusion checkpoint folder atomically (see write_folder) and return its path.

    include_raw=False keeps only the EMA weights: half the size, enough to sample (shipped models).
    """
    tensors = state_tensors(model, "model.") if include_raw or ema_model is None else {}
    if ema_model is not None:
        tensors.update(state_tensors(ema_model, "ema."))
    files = {WEIGHTS: tensors}
    opt_groups = None
    if optimizer is not None:
        files[OPTIMIZER], opt_groups = optimizer_to_tensors(optimizer)
    config = {
        "kind": "diffusion",
        "model": model_config.to_dict(),
        "schedule": schedule_config.to_dict(),
        "train": train_config.to_dict() if train_config else None,
        "recommended": (recommended or SampleConfig()).to_dict(),
    }
    full_meta = {"step": step, "optimizer_param_groups": opt_groups, **(meta or {})}
    return write_folder(path, files, config, full_meta, overwrite=overwrite, keep_sidecars=keep_sidecars)


def recover_checkpoint(path: str | Path) -> bool:
    """After a crash between the two renames of an overwrite, put the moved-aside complete copy back."""
    path = Path(path)
    if path.exists():
        return False
    olds = sorted(path.parent.glob(f".{path.name}.old-*"))
    if not olds:
        return False
    os.rename(olds[-1], path)
    return True


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is not a checkpoint: {path.name} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is corrupt") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def read_tensors(folder: str | Path, filename: str = WEIGHTS, verify: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of one weights file in a model folder, checked against meta.json's sha256."""
    folder = Path(folder)
    recover_checkpoint(folder)
    _, meta = read_configs(folder)
    hashes = meta.get("sha256", {}) if isinstance(meta.get("sha256"), dict) else {}
    return _load_safetensors(folder / filename, hashes.get(filename) if verify else None)


def _load_safetensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is not a checkpoint: {path.name} is missing")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the checkpoint was never completely written")
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file is an 8-byte little-endian header length followed by a JSON object ('{'). Only when
    # that shape is absent do we look for pickle / zip magic: a header length can itself begin with 0x80.
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    if not looks_safetensors and head.startswith(PICKLE_MAGIC):
        raise CheckpointError(f"{path} is a pickle / torch.save file, not safetensors. Diffusion Lab never "
                              "unpickles files, because loading a pickle can run arbitrary code.")
    if not looks_safetensors:
        raise CheckpointError(f"{path} is not a safetensors file (it does not start with a header)")
    header_len = int.from_bytes(head[:8], "little")
    if header_len > size - 8:
        raise CheckpointError(f"{path} is truncated or not a safetensors file (header larger than the file)")
    try:
        with open(path, "rb") as f:
            f.seek(8)
            header = json.loads(f.read(header_len))
        data_end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        raise CheckpointError(f"{path} is not a safetensors file (its header is not valid)") from None
    if 8 + header_len + data_end > size:
        raise CheckpointError(f"{path} is truncated: {size} bytes on disk, {8 + header_len + data_end} expected")
    if expected_sha is not None:
        actual = sha256_file(path)
        if actual != expected_sha:
            raise CheckpointError(f"{path} does not match the sha256 recorded in meta.json "
                                  f"({actual[:12]}… vs {expected_sha[:12]}…): the file is corrupt or was replaced")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} could not be read as safetensors ({e})") from None


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: Path) -> None:
    """Load `prefix*` tensors into `model`, or raise CheckpointError saying what does not match."""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path} holds no '{prefix}*' weights")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CheckpointError(f"config.json in {path.parent} does not match its weights: " + "; ".join(parts)
                              + ". The weights come from a different architecture.")
    model.load_state_dict(state)


def read_configs(path: str | Path) -> tuple[dict, dict]:
    """(config.json, meta.json) of a checkpoint folder, validated as JSON objects."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}")
    return _read_json(path / CONFIG), _read_json(path / META)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *, with_training_state: bool = False,
                    verify: bool = True) -> Checkpoint:
    """Load a diffusion checkpoint folder; raises CheckpointError naming the bad file and the reason."""
    path = Path(path)
    recover_checkpoint(path)
    config, meta = read_configs(path)
    if config.get("kind", "diffusion") != "diffusion":
        raise CheckpointError(f"{path} holds a {config.get('kind')!r} model, not a diffusion model")
    try:
        mc = ModelConfig.from_dict(config["model"])
        sc = ScheduleConfig.from_dict(config["schedule"])
        tc = TrainConfig.from_dict(config["train"]) if config.get("train") else None
        rec = SampleConfig.from_dict(config.get("recommended") or {})
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG} is invalid: {e}") from None
    hashes = meta.get("sha256", {}) if isinstance(meta.get("sha256"), dict) else {}
    tensors = _load_safetensors(path / WEIGHTS, hashes.get(WEIGHTS) if verify else None)
    model = build_model(mc)
    has_ema = any(k.startswith("ema.") for k in tensors)
    load_state(model, tensors, "ema." if has_ema else "model.", path / WEIGHTS)
    to_device(model, device).eval()          # the fast form (UpConv; channels-last on a CPU): see accel.to_device
    ck = Checkpoint(path, model, mc, sc, tc, rec, meta)
    if with_training_state:
        raw = build_model(mc)
        load_state(raw, tensors, "model.", path / WEIGHTS)
        ck.raw_model = raw.to(device)
        if (path / OPTIMIZER).is_file():
            ck.optimizer_state = _load_safetensors(path / OPTIMIZER, hashes.get(OPTIMIZER) if verify else None)
    return ck


def list_checkpoints(root: str | Path) -> list[dict[str, Any]]:
    """Checkpoint folders directly under `root` (and under root/runs/<run>/latest), newest first.

    Each entry: path, name, step, kind, params summary; folders that fail to parse are listed with `error`.
    """
    root = Path(root)
    out = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        if not (d / CONFIG).exists():
            continue
        entry: dict[str, Any] = {"path": str(d), "name": d.name}
        try:
            config, meta = read_configs(d)
            entry.update(kind=config.get("kind", "diffusion"), step=meta.get("step", 0),
                         metrics=meta.get("metrics", {}), mtime=(d / META).stat().st_mtime)
        except CheckpointError as e:
            entry["error"] = str(e)
        out.append(entry)
    return out
