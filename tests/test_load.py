"""The small classroom load test (the 30-session figures come from `python -m tests.load`, see its docstring):
5 learner sessions move the Forward slider, sample and scrub on Denoising while an instructor's training run
goes on in the same server. Every session must get its answers with no error element and no dropped connection,
and the training must keep progressing. Timings are reported, not asserted (they belong to benchmarks)."""
import asyncio

import pytest

pytest.importorskip("websockets")

from . import load  # noqa: E402


def test_five_sessions_interact_while_training_runs(tmp_path):
    port, proc = load.start_server(tmp_path)
    try:
        res = asyncio.run(load.run_load(5, 20, port, tmp_path, log=lambda *_: None))
    finally:
        load.stop(proc)
    print(res)
    assert res["error_count"] == 0, res["errors"]
    assert res["training_steps_during_load"] > 0, "the training run stalled while learners worked"
    kinds = res["by_kind"]
    assert kinds["forward slider"]["n"] >= 5 and kinds["denoising: new seed (samples)"]["n"] >= 1
