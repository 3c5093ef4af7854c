"""The CLIP page's evidence: what it shows on arrival, measured once by `python -m engine precompute --clip`
with the scoring, ranking and guidance of clip_eval.py, and stored beside the model (engine/evidence.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import checkpoints as ck
from .clip_eval import CLIP_PATH, Scorer, compare_techniques, load_digit_clip, rank_report

# -- evidence: what the CLIP page shows on arrival, measured once by `python -m engine precompute --clip` -------------
# Panels (engine/evidence.py) stored beside the model, all keyed by the diffusion weights' and the digit-CLIP's
# sha256 so a retrained model or CLIP never reads another's numbers:
#   clip_ranking     10 per class at one sampler setting: rank_report records and CLIP zero-shot probabilities
#   clip_real        the 1,000 held-out real digits scored the same way (the baseline)
#   clip_spread      one scale for many sources: the model (guided, unguided), early training snapshots, the
#                    ablation models and real digits, with the best and worst tiles of each
#   clip_sweep       the same seeds at several guidance weights
#   clip_techniques  compare_techniques (plain, best-of-n, rejection, CLIP guidance)
RANK_PER_CLASS = 10
SWEEP_WEIGHTS = (0.0, 1.0, 2.0, 4.0)          # plus the model's recommended weight
TECHNIQUES = {"per_class": 3, "n": 4, "max_steps": 20, "scale": 20.0}
ABLATIONS = ("no-skip", "no-time", "plain-cnn")
ABLATIONS_ROOT = CLIP_PATH.parent / "ablations"
EARLY_SNAPSHOTS = 3                           # the first, second and fourth snapshot (250, 500, 1000 for the default)
EXAMPLES = 3                                  # best and worst tiles stored per spread source
DIGIT_CLIP = "digit-CLIP"


def digit_clip_id(path: str | Path = CLIP_PATH) -> str:
    """Which digit-CLIP scored a measurement: "digit-CLIP@<first 12 hex of its weights' sha256>" (read from its
    meta.json; no weights are loaded)."""
    _, meta = ck.read_configs(Path(path))
    return f"{DIGIT_CLIP}@{meta.get('sha256', {}).get(ck.WEIGHTS, '')[:12]}"


def batch_seeds(seed: int, n: int) -> list[int]:
    """The seeds of a batch of n digits drawn "with seed `seed`": seed * n, ..., seed * n + n - 1, so the batches of
    two seeds share no digit (seed + i would make seed 1's batch seed 0's shifted by one: n - 1 digits in common)."""
    return [int(seed) * n + i for i in range(n)]


def ranking_params(weights_sha: str, config, clip_id: str, per_class: int = RANK_PER_CLASS) -> dict:
    """Evidence key of a ranked batch: per_class digits of each class, seeds batch_seeds(config.seed, 10 * per_class).
    """
    return {"weights": weights_sha, "sample": config.to_dict(), "per_class": per_class, "clip": clip_id}


def real_params(clip_id: str) -> dict:
    return {"data": "mnist-5k held-out", "clip": clip_id}


def spread_params(weights_sha: str, config, clip_id: str, per_class: int = RANK_PER_CLASS) -> dict:
    return {"weights": weights_sha, "sample": config.to_dict(), "per_class": per_class, "clip": clip_id,
            "ablations": list(ABLATIONS), "snapshots": EARLY_SNAPSHOTS}


def sweep_params(weights_sha: str, config, clip_id: str, per_class: int = RANK_PER_CLASS) -> dict:
    """The sweep's weights: SWEEP_WEIGHTS plus config.guidance; every other setting (interval, steps, seeds) is
    config's, so the point at the recommended weight is the ranked batch itself."""
    weights = sorted({float(w) for w in SWEEP_WEIGHTS} | {float(config.guidance)})
    return {"weights": weights_sha, "sample": config.to_dict(), "guidance": weights, "per_class": per_class,
            "clip": clip_id}


def technique_params(weights_sha: str, config, clip_id: str, scale: float = TECHNIQUES["scale"]) -> dict:
    return {"weights": weights_sha, "sample": technique_config(config).to_dict(), "scale": float(scale),
            "per_class": TECHNIQUES["per_class"], "n": TECHNIQUES["n"], "clip": clip_id}


def technique_config(config):
    """The comparison samples with at most TECHNIQUES["max_steps"] steps (CLIP guidance back-propagates each)."""
    return config.replace(steps=min(config.steps, TECHNIQUES["max_steps"]))


def _r(x, nd: int = 4) -> list:
    return [round(float(v), nd) for v in np.asarray(x).ravel()]


def encode_tile(img: np.ndarray) -> str:
    """(28, 28) uint8 -> base64 of its raw bytes (1,048 characters; a JSON int list would be ~3x larger)."""
    import base64

    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.shape != (28, 28):
        raise ValueError(f"a tile is a (28, 28) uint8 image, got shape {a.shape}")
    return base64.b64encode(a.tobytes()).decode("ascii")


def decode_tile(s: str) -> np.ndarray:
    """encode_tile's inverse: (28, 28) uint8."""
    import base64

    return np.frombuffer(base64.b64decode(s), dtype=np.uint8).reshape(28, 28).copy()


def score_table(scorer: Scorer, judge, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Columns for images (N, 1, 28, 28) in [-1, 1] asked to be `labels`: class, clip_score (CLIPScore against the
    class prompts), judge_class (0-9, or judge.NOT_A_DIGIT = 10 when the judge abstains), judge_confidence (the
    judge's probability of the asked class; 0 when it abstains), thickness (px), slant (degrees)."""
    from .judge import predict
    from .style import measure

    scores = scorer.class_scores(images, labels)
    probs, _ = predict(judge, images)                                           # (N, 11)
    style = measure(images)                                                     # (N, 2)
    return {"class": [int(c) for c in labels], "clip_score": _r(scores),
            "judge_class": [int(c) for c in probs.argmax(1)],
            "judge_confidence": _r(probs[torch.arange(len(labels)), labels]),
            "thickness": _r(style[:, 0], 3), "slant": _r(style[:, 1], 2)}


def ranked_batch(checkpoint, scorer: Scorer, judge, config, per_class: int = RANK_PER_CLASS, keep: int = 3,
                 cache=None) -> tuple[dict, torch.Tensor]:
    """(result, images): per_class digits of each class sampled with `config` (seeds batch_seeds(config.seed, N),
    classes in order), their rank_report records and CLIP zero-shot probabilities (N, 10); images (N, 1, 28, 28)
    in [-1, 1]."""
    from .sampling import class_labels, sample_cached

    labels = class_labels(per_class)
    seeds = batch_seeds(config.seed, len(labels))
    x = sample_cached(checkpoint, labels, config, seeds=seeds, cache=cache)
    records = rank_report(scorer, judge, x, labels, seeds, keep)
    zs = scorer.zero_shot(x)
    return {"records": records, "zero_shot": [_r(p, 3) for p in zs]}, x


def real_baseline(scorer: Scorer, judge, heldout) -> dict:
    """score_table of the held-out real digits, plus zero_shot_class (CLIP's own reading of each)."""
    table = score_table(scorer, judge, heldout.images, heldout.labels)
    table["zero_shot_class"] = [int(c) for c in scorer.zero_shot(heldout.images).argmax(1)]
    return table


def score_sources(scorer: Scorer, judge, sources: list[dict], examples: int = EXAMPLES) -> list[dict]:
    """Score several sets of digits on one scale. Each source: {"name", "kind", "detail", "images" (N, 1, 28, 28)
    in [-1, 1], "labels" (N,)}. Returns one dict per source: name, kind, detail, n, the score_table columns, and
    "examples": the `examples` highest- and lowest-scoring tiles ({"rank": "best"|"worst", "index", "tile":
    encode_tile}), best first, worst last."""
    from .sampling import to_uint8

    out = []
    for src in sources:
        table = score_table(scorer, judge, src["images"], src["labels"])
        order = np.argsort(-np.asarray(table["clip_score"]), kind="stable")
        k = min(examples, len(order) // 2)
        pix = to_uint8(src["images"]).numpy()
        picks = [("best", int(i)) for i in order[:k]] + [("worst", int(i)) for i in order[len(order) - k:]]
        out.append({"name": src["name"], "kind": src["kind"], "detail": src.get("detail", ""), "n": len(table["class"]),
                    **table, "examples": [{"rank": r, "index": i, "tile": encode_tile(pix[i])} for r, i in picks]})
    return out


def early_snapshots(snapshots: list[tuple[int, np.ndarray]],
                    count: int = EARLY_SNAPSHOTS) -> list[tuple[int, np.ndarray]]:
    """The first snapshot and the ones at 2x, 4x, ... its step (the early part of training, where quality moves);
    snapshots: [(step, uint8 (N, 28, 28)), ...] in step order."""
    if not snapshots:
        return []
    by_step = dict(snapshots)
    first = snapshots[0][0]
    wanted = [first * 2 ** i for i in range(count)]
    return [(s, by_step[s]) for s in wanted if s in by_step]


def spread_sources(checkpoint, config, per_class: int = RANK_PER_CLASS, ablations=None,
                   ablations_root: str | Path | None = None, heldout=None, cache=None) -> list[dict]:
    """The images the spread scores, sampled with the engine's own functions (seeds batch_seeds(config.seed, N)):
    the model at `config`, the same seeds unguided (w = 0), its early training snapshots (checkpoint.path /
    snapshots, 2 per class), each ablation model (default: ABLATIONS under ABLATIONS_ROOT) at its own recommended
    settings, and the held-out real digits."""
    from .data import load as load_data, uint8_to_model
    from .sampling import class_labels, sample_cached
    from .training.runs import load_snapshots

    labels = class_labels(per_class)
    seeds = batch_seeds(config.seed, len(labels))

    def how(c) -> str:
        lo = c.guidance_interval[0]
        gi = "" if c.guidance == 0 or lo == 0 else f" while t/T ≥ {lo:g}"
        return f"{c.sampler.upper()}-{c.steps}, w = {c.guidance:g}{gi}"

    sources = [{"name": f"{checkpoint.name} (w = {config.guidance:g})", "kind": "model", "detail": how(config),
                "images": sample_cached(checkpoint, labels, config, seeds=seeds, cache=cache), "labels": labels}]
    unguided = config.replace(guidance=0.0)
    sources.append({"name": f"{checkpoint.name} unguided (w = 0)", "kind": "unguided", "detail": how(unguided),
                    "images": sample_cached(checkpoint, labels, unguided, seeds=seeds, cache=cache), "labels": labels})
    for step, snap in early_snapshots(load_snapshots(checkpoint.path)):
        n = snap.shape[0]
        sources.append({"name": f"{checkpoint.name} at step {step}", "kind": "snapshot",
                        "detail": f"training snapshot, {n // 10} per class", "images": uint8_to_model(snap),
                        "labels": class_labels(n // 10)})
    for name in ABLATIONS if ablations is None else ablations:
        abl = ck.load_checkpoint(Path(ABLATIONS_ROOT if ablations_root is None else ablations_root) / name)
        cfg = abl.recommended.replace(seed=config.seed)
        sources.append({"name": f"ablation {name}", "kind": "ablation", "detail": how(cfg),
                        "images": sample_cached(abl, labels, cfg, seeds=seeds, cache=cache), "labels": labels})
    if heldout is None:
        heldout = load_data("mnist-5k")[1]
    sources.append({"name": "real held-out digits", "kind": "real", "detail": f"{len(heldout)} MNIST digits",
                    "images": heldout.images, "labels": heldout.labels})
    return sources


def guidance_sweep(checkpoint, scorer: Scorer, judge, config, weights, per_class: int = RANK_PER_CLASS,
                   cache=None) -> list[dict]:
    """The same seeds (batch_seeds(config.seed, N)) at each guidance weight, everything else as `config`: one row per
    weight with its score_table columns."""
    from .sampling import class_labels, sample_cached

    labels = class_labels(per_class)
    seeds = batch_seeds(config.seed, len(labels))
    rows = []
    for w in weights:
        x = sample_cached(checkpoint, labels, config.replace(guidance=float(w)), seeds=seeds, cache=cache)
        rows.append({"guidance": float(w), **score_table(scorer, judge, x, labels)})
    return rows


def precompute_evidence(checkpoint_dir: str | Path, command: str, progress=print) -> list[tuple[str, float]]:
    """Measure every panel the CLIP page lands on for the model at `checkpoint_dir` (its recommended settings, seed 0,
    digit-CLIP, CLIP-guidance scale TECHNIQUES["scale"]) and store them in `checkpoint_dir`/evidence/clip_*.json.

    Samples are drawn afresh (no sample cache), so each panel's recorded seconds are what the page would spend
    computing it; a few minutes in all on a 2-core CPU. Returns [(panel, seconds), ...].
    """
    from . import evidence
    from .data import load as load_data
    from .judge import load_judge
    from .schedule import NoiseSchedule

    checkpoint = ck.load_checkpoint(checkpoint_dir)
    scorer, judge = load_digit_clip(), load_judge()
    clip_id = digit_clip_id()
    config = checkpoint.recommended.replace(seed=0)
    sha = checkpoint.sha256
    heldout = load_data("mnist-5k")[1]
    done = []

    def measure(panel: str, params: dict, fn) -> None:
        entry = evidence.measure(checkpoint_dir, panel, params, fn, command)
        done.append((panel, entry["seconds"]))
        progress(f"  {panel}: {entry['seconds']:.1f} s")

    measure("clip_ranking", ranking_params(sha, config, clip_id),
            lambda: ranked_batch(checkpoint, scorer, judge, config)[0])
    measure("clip_real", real_params(clip_id), lambda: real_baseline(scorer, judge, heldout))
    measure("clip_spread", spread_params(sha, config, clip_id),
            lambda: score_sources(scorer, judge, spread_sources(checkpoint, config, heldout=heldout)))
    sp = sweep_params(sha, config, clip_id)
    measure("clip_sweep", sp, lambda: guidance_sweep(checkpoint, scorer, judge, config, sp["guidance"]))
    tp = technique_params(sha, config, clip_id)
    measure("clip_techniques", tp, lambda: compare_techniques(
        checkpoint.model, NoiseSchedule(checkpoint.schedule_config), scorer, judge, technique_config(config),
        per_class=tp["per_class"], n=tp["n"], guidance_scale=tp["scale"], seed=config.seed, per_sample=True))
    return done
