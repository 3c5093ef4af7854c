"""engine/export.py: the slim shipped copy, precomputed samples and the style report beside a model."""
import json

import pytest

from engine.checkpoints import load_checkpoint, read_tensors
from engine.export import evaluate_style, export_checkpoint, precompute_samples
from engine.training.run import TrainingRun

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


@pytest.fixture
def run_folder(tmp_path):
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=2, sample_every=1), TINY_SAMPLE,
                             tmp_path / "run")
    while not run.done:
        run.train_one()
    (run.out / "precomputed").mkdir()
    (run.out / "notes.txt").write_text("not a sidecar")
    return run.out


def test_export_keeps_only_the_ema_weights_and_the_sidecars(tmp_path, run_folder):
    done = export_checkpoint(run_folder, tmp_path / "ship", {"guidance": 0.7, "steps": 3}, command="cmd")
    assert done.path == tmp_path / "ship" and done.step == 2
    assert done.bytes == sum(f.stat().st_size for f in done.path.rglob("*") if f.is_file())
    keys = read_tensors(done.path)
    assert keys and all(k.startswith("ema.") for k in keys)                         # no raw weights
    assert not (done.path / "optimizer.safetensors").exists()
    assert sorted(p.name for p in done.path.iterdir()) == ["config.json", "meta.json", "metrics.jsonl",
                                                          "snapshots", "weights.safetensors"]
    shipped, source = load_checkpoint(done.path), load_checkpoint(run_folder)
    assert shipped.recommended == source.recommended.replace(guidance=0.7, steps=3)
    assert shipped.meta["export_command"] == "cmd" and shipped.meta["exported_from"] == str(run_folder)
    assert all((a == b).all() for a, b in zip(shipped.model.state_dict().values(), source.model.state_dict().values()))


def test_precompute_stores_the_pages_samples_beside_the_model(run_folder):
    n, seconds, folder = precompute_samples(run_folder)
    assert n == 100 and seconds > 0 and folder == run_folder / "precomputed"
    assert list(folder.glob("*.safetensors"))


def test_style_report_is_recorded_in_report_json_keeping_the_other_sections(monkeypatch, run_folder):
    import engine.judge
    import engine.style

    asked = {}

    def fake_compliance(checkpoint, judge, config, seeds):
        asked.update(config=config, seeds=seeds, judge=judge)
        return {"thickness_spearman": 0.9, "n": 4}

    monkeypatch.setattr(engine.style, "compliance", fake_compliance)
    monkeypatch.setattr(engine.judge, "load_judge", lambda: "judge")
    (run_folder / "report.json").write_text(json.dumps({"accuracy": 0.99, "style": {"old": True}}))
    rep = evaluate_style(run_folder, {"steps": 2}, seeds=3, command="cmd")
    assert asked == {"config": TINY_SAMPLE.replace(steps=2), "seeds": 3, "judge": "judge"}
    assert rep["thickness_spearman"] == 0.9 and rep["command"] == "cmd" and "seconds" in rep
    assert json.loads((run_folder / "report.json").read_text()) == {"accuracy": 0.99, "style": rep}
    assert not [p for p in run_folder.iterdir() if p.name.startswith(".report.json")]     # no temp file left
