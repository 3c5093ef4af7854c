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


def test_precompute_evidence_stores_each_panel_under_the_parameters_the_pages_ask_for(tmp_path, run_folder,
                                                                                       monkeypatch):
    """The pages look measurements up by evidence_params; precompute must store them under exactly those."""
    from engine import evidence, export
    from engine.export import MODEL_PANELS, evidence_params, precompute_evidence

    for name in ("SPEED_PER_CLASS", "CURVE_PER_CLASS", "GRID_SEEDS"):             # small, for a quick test
        monkeypatch.setattr(export, name, 1)
    said = []
    done = precompute_evidence(run_folder, "python -m engine precompute", progress=said.append)
    assert [name for name, _ in done] == list(MODEL_PANELS) and len(said) == len(MODEL_PANELS)
    ck = load_checkpoint(run_folder)
    for panel in MODEL_PANELS:
        entry = evidence.lookup(run_folder, panel, **evidence_params(panel, ck))
        assert entry is not None and entry["measured"]["command"] == "python -m engine precompute"
    grid = evidence.lookup(run_folder, "guidance_grid", **evidence_params("guidance_grid", ck))["result"]
    assert len(grid["images"]) == 4 and len(grid["images"][0]) == 10 and len(grid["accuracy"][0]) == 10
    speed = evidence.lookup(run_folder, "sampler_speed", **evidence_params("sampler_speed", ck))["result"]
    T = ck.schedule_config.T
    solvers = [(name, s) for name in ("dpmpp-2m", "unipc") for s in (5, 8, 10, 15, 25)]
    assert T == 50 and [(r["sampler"], r["steps"]) for r in speed] == [
        ("ddim", 5), ("ddim", 10), ("ddim", 25), ("ddim", 50), *solvers, ("ddpm", 50)]   # DDPM-T once, not twice
    assert evidence_params("sampler_speed", ck)["configs"] == [f"{s}-{n}" for s, n in
                                                               [(r["sampler"], r["steps"]) for r in speed]]
    # another guidance weight is another measurement: not found until measured
    other = evidence_params("sampler_speed", ck, config=ck.recommended.replace(guidance=3.0))
    assert evidence.lookup(run_folder, "sampler_speed", **other) is None
