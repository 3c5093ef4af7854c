"""engine/evidence.py: stored measurements beside a model, and the shipped ones the pages land on."""
import json

import pytest

from engine import evidence, export
from engine.checkpoints import load_checkpoint
from engine.evidence import lookup, read_panel, record


def test_record_then_lookup_by_exact_parameters_with_int_keys_restored(tmp_path):
    result = {"accuracy": {0: [0.5, 1.0], 7: [0.25]}, "done": [0.5, 1.0]}
    record(tmp_path, "curve", {"steps": 25, "w": 0.4}, result, 3.14159, "python -m engine precompute")
    entry = lookup(tmp_path, "curve", w=0.4, steps=25)                   # parameter order does not matter
    assert entry["result"] == result and entry["seconds"] == 3.14
    assert entry["measured"]["command"] == "python -m engine precompute" and ("CPU" in entry["measured"]["machine"] or "GPU" in entry["measured"]["machine"])
    assert lookup(tmp_path, "curve", steps=10, w=0.4) is None            # other settings: not measured
    record(tmp_path, "curve", {"steps": 10, "w": 0.4}, {"x": 1}, 1.0, "c")
    assert len(read_panel(tmp_path, "curve")) == 2                       # entries accumulate
    assert (tmp_path / "evidence" / "curve.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content", ["{not json", json.dumps([1, 2]), json.dumps({"entries": 5}), "[" * 100_000])
def test_an_unreadable_panel_file_counts_as_not_measured(tmp_path, content):
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "curve.json").write_text(content)
    assert read_panel(tmp_path, "curve") == {} and lookup(tmp_path, "curve", a=1) is None


def test_an_oversized_panel_file_is_not_read_and_names_are_checked(tmp_path, monkeypatch):
    record(tmp_path, "curve", {"a": 1}, list(range(1000)), 1.0, "c")
    monkeypatch.setattr(evidence, "MAX_BYTES", 100)
    assert lookup(tmp_path, "curve", a=1) is None
    with pytest.raises(ValueError, match="panel name"):
        evidence.panel_path(tmp_path, "../../etc/passwd")


@pytest.mark.parametrize("model", ["default", "fast"])
def test_shipped_models_carry_every_landing_panel_with_the_pages_parameters(model):
    """What makes a 'Show me' land with its evidence: each panel was measured with exactly the parameters the
    Denoising and Training pages ask for at the model's landing settings."""
    ck = load_checkpoint(f"checkpoints/{model}")
    for panel in export.MODEL_PANELS:
        entry = lookup(f"checkpoints/{model}", panel, **export.evidence_params(panel, ck))
        assert entry is not None, f"{model}: {panel} not precomputed (python -m engine precompute)"
        assert "precompute" in entry["measured"]["command"] and entry["seconds"] > 0
    for kind in ("cosine", "linear"):
        assert lookup("checkpoints/judge", "forward_recognisability",
                      **export.evidence_params("forward_recognisability", schedule=kind)) is not None


def test_shipped_evidence_stays_small():
    """The issue's budget: the precomputed panels add well under ~5 MB in all."""
    from pathlib import Path

    total = sum(p.stat().st_size for p in Path("checkpoints").glob("*/evidence/*.json"))
    assert 0 < total < 3 * 2**20, total


def test_evidence_belongs_to_the_weights_and_the_judge_it_measured(tmp_path):
    """A retrained model (other weights) or a recalibrated judge must not read the shipped numbers."""
    import json
    import shutil

    ck = load_checkpoint("checkpoints/default")
    params = export.evidence_params("bucket_loss", ck)
    assert params["model_sha256"] == ck.sha256[:16] and lookup("checkpoints/default", "bucket_loss", **params)

    class Retrained:
        recommended, schedule_config, sha256 = ck.recommended, ck.schedule_config, "0" * 64

    assert lookup("checkpoints/default", "bucket_loss", **export.evidence_params("bucket_loss", Retrained)) is None
    judge = tmp_path / "judge"
    shutil.copytree("checkpoints/judge", judge)
    meta = json.loads((judge / "meta.json").read_text())
    meta["sha256"]["abstention.safetensors"] = "f" * 64                       # as if calibrated again
    (judge / "meta.json").write_text(json.dumps(meta))
    moved = export.evidence_params("forward_recognisability", schedule="cosine", judge_path=judge)
    assert moved != export.evidence_params("forward_recognisability", schedule="cosine")
    assert lookup(judge, "forward_recognisability", **moved) is None
