"""The benchmark: measured figures, medians over repeats, in one run on one machine (`python -m engine bench`).

Every figure is measured here, now; nothing is asserted. `quick` shrinks repeats and sample counts to run in
about a minute. The peer is diffusers' UNet2DModel configured as in the Hugging Face course's class-conditioned
MNIST example (block_out_channels (32, 64, 64), two layers per block, attention in the two lower levels, the
class as 4 extra input channels), trained with the same batch, data and threads.

This package sits outside the library (`engine/`) on purpose: besides the engine it drives the dashboard
(`streamlit run dashboard.py`, AppTest on its pages), so it knows page paths and session-state keys that the
library must not. The engine imports it only from its command line; pages and ui/ never do (they show recorded
measurements; the Denoising page's live sampler timing is engine.metrics.sampling_figures).

    timing.py     median wall-clock times, synchronised with the GPU
    machine.py    the machine's reference: fp32 matmul GFLOP/s
    peer.py       the peer: the HF course's U-Net and its training recipe
    training.py   training throughput (eager, compiled, the peer) and time to 95 % judge accuracy
    sampling.py   sampling seconds and judge accuracy of the shipped models (eager, compiled), CLIP scoring
    dashboard.py  the dashboard's own timings: forward slider, page rerun, cold start, first page, memory
    run.py        run_bench: all of the above, in order, into one dict (the bench.json keys)
"""
from .run import run_bench

__all__ = ["run_bench"]
