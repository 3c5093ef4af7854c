"""Classroom load test: many learner sessions against `streamlit run` on loopback while a training job runs.

Each session speaks Streamlit's own websocket protocol (the protobufs the browser sends), so 30 sessions cost
the server what 30 browsers would, without 30 browsers competing with the server for a 2-core CPU:

- it opens a page (`rerun_script` with the page name and query string), reads the page's widgets from the
  deltas, then changes one widget the way the browser does (a fragment rerun for the Forward slider, a full
  rerun for the Denoising seed) and fetches every image the answer refers to (`/media/...`), as a browser would;
- the round trip of an interaction is send -> the run's `script_finished` -> all its images fetched;
- an error element (st.exception, st.error) or a dropped connection in any session counts as a failure.

One instructor session unlocks with the passcode and starts a tiny training run from the Training page; the
run's step counter is read from its metrics log before and after, to show training kept progressing.

With --hostile N, N more sessions attack: each uploads a 180 KB, 6300 x 6300 transparent PNG on Forward (through
Streamlit's real upload route), then hammers every heavy path in turn (Denoising with DDPM at 1,000 steps and a
new seed each time, its "measure it now" panels, the CLIP page at new guidance weights with its technique
comparison, Applications' inpainting with 4x resampling) without pausing. Their refusals are counted, not
errors; the others' round trips are reported apart from theirs, and the server's memory is sampled throughout.

    python -m tests.load --sessions 30 --seconds 60 --out load.json      # the figures for the issue
    python -m tests.load --sessions 20 --hostile 1 --seconds 60           # ... with a hostile learner
    tests/test_load.py runs a 5-session, ~20 s version in the default suite.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.server import free_port, serve, stop

PASSCODE = "load-test-passcode"
ALERT_ERROR, ALERT_WARNING = 1, 2


@dataclass
class Widget:
    id: str
    fragment_id: str
    kind: str


@dataclass
class Stats:
    round_trips: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)     # what the hostile sessions were told (not errors)

    def add(self, kind: str, seconds: float) -> None:
        self.round_trips.setdefault(kind, []).append(seconds)


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class Session:
    """One browser tab, as the server sees it."""

    def __init__(self, port: int, stats: Stats, name: str, hostile: bool = False):
        self.port, self.stats, self.name, self.hostile = port, stats, name, hostile
        self.ws = None
        self.session_id = ""
        self.widgets: dict[str, Widget] = {}
        self.page_hash = ""
        self.query = ""
        self.texts: list[str] = []

    async def connect(self) -> None:
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/_stcore/stream", subprotocols=["streamlit"],
                                           max_size=None, open_timeout=60, ping_interval=None)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def _run(self, state) -> float:
        t0 = time.perf_counter()
        msg = BackMsg()
        msg.rerun_script.CopyFrom(state)
        await self.ws.send(msg.SerializeToString())
        media: list[str] = []
        self.texts = []
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), timeout=300))
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                self.session_id = fm.new_session.initialize.session_id or self.session_id
            elif kind == "navigation":               # st.navigation names the page that ran
                self.page_hash = fm.navigation.page_script_hash or self.page_hash
            elif kind == "page_info_changed":
                self.query = fm.page_info_changed.query_string
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                self._element(fm.delta.new_element, fm.delta.fragment_id, media)
            elif kind == "script_finished" and fm.script_finished != 2:   # 2: stopped early for a rerun
                break
        await asyncio.gather(*(self._fetch(u) for u in media))
        return time.perf_counter() - t0

    def _element(self, el, fragment_id: str, media: list[str]) -> None:
        ek = el.WhichOneof("type")
        body = getattr(el, ek)
        if ek == "exception":
            self.stats.errors.append(f"{self.name}: exception {body.type}: {body.message[:200]}")
        elif ek == "alert" and body.format == ALERT_ERROR and not self.hostile:
            self.stats.errors.append(f"{self.name}: error {body.body[:200]}")
        elif ek == "alert" and self.hostile and body.format in (ALERT_ERROR, ALERT_WARNING):
            self.stats.refusals.append(body.body[:300])
        elif ek == "imgs":
            media += [i.url for i in body.imgs if i.url.startswith("/media/")]
        elif ek in ("markdown", "alert"):
            self.texts.append(getattr(body, "body", ""))
        wid = getattr(body, "id", "")
        if isinstance(wid, str) and wid.startswith("$$ID-") and "-" in wid[5:]:
            self.widgets[wid.split("-", 2)[2]] = Widget(wid, fragment_id, ek)

    async def _fetch(self, url: str) -> None:
        def get():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{url}", timeout=60) as r:
                r.read()
        await asyncio.get_running_loop().run_in_executor(None, get)

    async def open(self, page: str, query: str = "") -> float:
        self.widgets = {}
        msg = BackMsg().rerun_script
        msg.query_string, msg.page_name = query, page
        return await self._run(msg)

    async def set(self, key: str, value, fragment: bool = True) -> float:
        """Change the widget with this key as the browser would (only the changed state is sent; the others
        keep their server-side values)."""
        w = self.widgets[key]
        msg = BackMsg().rerun_script
        msg.query_string, msg.page_script_hash = self.query, self.page_hash
        ws = msg.widget_states.widgets.add()
        ws.id = w.id
        if w.kind == "slider":
            ws.double_array_value.data.append(float(value))
        elif w.kind == "number_input":
            ws.int_value = int(value)
        elif w.kind == "button":
            ws.trigger_value = True
        elif w.kind == "text_input":
            ws.string_value = str(value)
        elif w.kind == "checkbox":                     # st.checkbox and st.toggle
            ws.bool_value = bool(value)
        elif w.kind == "radio":
            ws.string_value = str(value)               # the option's label
        else:
            raise ValueError(f"no encoding for a {w.kind}")
        if fragment and w.fragment_id:
            msg.fragment_id = w.fragment_id
        return await self._run(msg)

    async def upload(self, key: str, name: str, data: bytes) -> float:
        """Upload a file into the st.file_uploader with this key as the browser does: ask for an upload URL on the
        websocket, PUT the file there (with the XSRF cookie and header), then rerun with the widget's new state."""
        t0 = time.perf_counter()
        req = BackMsg()
        req.file_urls_request.request_id = rid = f"{self.name}-{time.monotonic_ns()}"
        req.file_urls_request.file_names.append(name)
        req.file_urls_request.session_id = self.session_id
        await self.ws.send(req.SerializeToString())
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), timeout=60))
            if fm.WhichOneof("type") == "file_urls_response" and fm.file_urls_response.response_id == rid:
                urls = fm.file_urls_response.file_urls[0]
                break
        await asyncio.get_running_loop().run_in_executor(None, self._put, urls.upload_url, name, data)
        w = self.widgets[key]
        msg = BackMsg().rerun_script
        msg.query_string, msg.page_script_hash = self.query, self.page_hash
        ws = msg.widget_states.widgets.add()
        ws.id = w.id
        info = ws.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = name, len(data), urls.file_id
        info.file_urls.CopyFrom(urls)
        await self._run(msg)
        return time.perf_counter() - t0

    def _put(self, url: str, name: str, data: bytes) -> None:
        base = f"http://127.0.0.1:{self.port}"
        with urllib.request.urlopen(base + "/_stcore/health", timeout=60) as r:     # sets the XSRF cookie
            cookie = next((c.split(";")[0] for c in r.headers.get_all("Set-Cookie") or []
                           if c.startswith("_streamlit_xsrf=")), "")
        boundary = "loadtestboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(base + url if url.startswith("/") else url, data=body, method="PUT", headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Cookie": cookie,
            "X-Xsrftoken": cookie.partition("=")[2]})
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()

    async def submit_form(self, fields: dict[str, str], submit_key: str) -> float:
        """Text fields of a form and its submit button in one message, as the browser sends a form."""
        msg = BackMsg().rerun_script
        msg.query_string, msg.page_script_hash = self.query, self.page_hash
        for key, value in fields.items():
            ws = msg.widget_states.widgets.add()
            ws.id, ws.string_value = self.widgets[key].id, value
        ws = msg.widget_states.widgets.add()
        ws.id, ws.trigger_value = self.widgets[submit_key].id, True
        return await self._run(msg)


async def forward_learner(s: Session, until: float, rng: random.Random) -> None:
    s.stats.add("open page", await s.open("forward_process", f"t={rng.randrange(1000)}"))
    while time.perf_counter() < until:
        t = rng.randrange(1000)
        s.stats.add("forward slider", await s.set("forward.t", t))
        if not any(f"x_{{{t}}}" in x for x in s.texts):
            s.stats.errors.append(f"{s.name}: the slider answer did not show t = {t}")
        await asyncio.sleep(rng.uniform(0.3, 1.0))


async def denoising_learner(s: Session, until: float, rng: random.Random) -> None:
    """Asks for a new digit (a fresh guided trajectory: real sampling), then scrubs through its frames a few times
    (cached: the page is built for looking at one trajectory closely) before the next digit."""
    s.stats.add("open page", await s.open("denoising", f"seed={rng.randrange(100)}"))
    while time.perf_counter() < until:
        s.stats.add("denoising: new seed (samples)", await s.set("denoising.seed", rng.randrange(100_000),
                                                                 fragment=False))
        for _ in range(rng.randint(2, 6)):
            if time.perf_counter() >= until:
                break
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            s.stats.add("denoising: scrub frames", await s.set("denoising.frame", rng.randrange(26)))


def big_transparent_png(side: int = 6300) -> bytes:
    """A side x side RGBA PNG, transparent but for one short stroke: ~180 KB on disk, 159 MB as decoded RGBA."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(side // 3, side // 4), (side // 2, 3 * side // 4)], fill=(0, 0, 0, 255),
                            width=side // 20)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


async def hostile_learner(s: Session, until: float, rng: random.Random, png: bytes) -> None:
    """Uploads the large image, then asks for the costliest thing on every heavy path, without pausing."""
    s.stats.add("hostile: open page", await s.open("forward_process"))
    await s.set("forward.source", "upload", fragment=False)
    s.stats.add("hostile: upload 6300x6300 PNG", await s.upload("forward.upload", "huge.png", png))
    while time.perf_counter() < until:
        await s.open("denoising", f"sampler=ddpm&steps=1000&w={rng.uniform(0, 8):.1f}&seed={rng.randrange(99999)}")
        for toggle in ("denoising.speed", "denoising.curve", "denoising.grid", "denoising.wrong"):
            if time.perf_counter() >= until:
                return
            if toggle in s.widgets:
                s.stats.add("hostile: heavy request", await s.set(toggle, True, fragment=False))
        await s.open("clip_evaluation", f"w={rng.uniform(0, 6):.1f}&seed={rng.randrange(99999)}")
        if "clip.compare" in s.widgets and time.perf_counter() < until:
            s.stats.add("hostile: heavy request", await s.set("clip.compare", True, fragment=False))
        await s.open("applications")
        for key, value in (("apps.steps", 100), ("apps.resample", 4), ("apps.inpaint_seed", rng.randrange(9999))):
            if key in s.widgets and time.perf_counter() < until:
                s.stats.add("hostile: heavy request", await s.set(key, value, fragment=False))


class MemoryWatch:
    """The server's resident memory (VmRSS of its process), sampled every half second in a thread."""

    def __init__(self, pid: int | None):
        self.pid, self.samples, self._stop = pid, [], False

    def rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, ValueError, TypeError):
            return None
        return None

    async def run(self) -> None:
        while not self._stop:
            v = self.rss_mb()
            if v is not None:
                self.samples.append(v)
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        self._stop = True


def _quarters(samples: list[float]) -> list[list[float]]:
    """The samples in four consecutive runs of equal length (the last may be longer); empty ones left out."""
    k = len(samples) // 4
    parts = [samples[i * k:(i + 1) * k] for i in range(3)] + [samples[3 * k:]] if k else [samples]
    return [p for p in parts if p]


def start_server(runs_root: Path) -> tuple[int, subprocess.Popen]:
    """The dashboard in classroom mode on loopback, runs and log (server.log) in runs_root; returns (port, proc)."""
    port = free_port()
    _, proc = serve(runs_root, runs_root / "server.log", port=port, DIFFUSION_LAB_CLASSROOM="1",
                    DIFFUSION_LAB_PASSCODE=PASSCODE)
    return port, proc


def _steps_logged(runs_root: Path) -> int:
    best = 0
    for log in runs_root.glob("*/metrics.jsonl"):
        for line in log.read_text().splitlines():
            try:
                best = max(best, int(json.loads(line).get("step", 0)))
            except (ValueError, AttributeError):
                pass
    return best


async def run_load(sessions: int, seconds: float, port: int, runs_root: Path, seed: int = 0,
                   denoising_every: int = 3, train: bool = True, log=print, hostile: int = 0,
                   server_pid: int | None = None) -> dict:
    stats = Stats()
    memory = MemoryWatch(server_pid)
    teacher = Session(port, stats, "instructor")
    await teacher.connect()
    await teacher.open("training")
    await teacher.submit_form({"app.unlock.passcode": PASSCODE}, "app.unlock.submit")
    await teacher.open("training")
    t_train = time.perf_counter()
    if train:
        await teacher.set("training.start", True, fragment=False)   # the tiny preset, as the form proposes it
        for _ in range(300):                                  # wait for the first logged step
            if _steps_logged(runs_root) > 0:
                break
            await asyncio.sleep(0.5)
    steps_before = _steps_logged(runs_root)
    log(f"training started ({steps_before} steps logged after {time.perf_counter() - t_train:.1f} s); "
        f"opening {sessions} sessions for {seconds:.0f} s")

    learners = [Session(port, stats, f"learner {i}") for i in range(sessions)]
    attackers = [Session(port, stats, f"hostile {i}", hostile=True) for i in range(hostile)]
    await asyncio.gather(*(s.connect() for s in learners + attackers))
    png = big_transparent_png() if attackers else b""
    rss_before = memory.rss_mb()
    watch = asyncio.create_task(memory.run())
    t0 = time.perf_counter()
    until = t0 + seconds

    async def drive(i: int, s: Session) -> None:
        r = random.Random(seed * 1000 + i)
        await asyncio.sleep(r.uniform(0, 2))
        try:
            kind = denoising_learner if denoising_every and i % denoising_every == denoising_every - 1 else forward_learner
            await kind(s, until, r)
        except Exception as e:  # a dropped connection or a timeout is a failure of the server, not of the test
            stats.errors.append(f"{s.name}: {type(e).__name__}: {e}")

    async def attack(i: int, s: Session) -> None:
        try:
            await hostile_learner(s, until, random.Random(seed * 1000 + 500 + i), png)
        except Exception as e:
            stats.errors.append(f"{s.name}: {type(e).__name__}: {e}")

    await asyncio.gather(*(drive(i, s) for i, s in enumerate(learners)), *(attack(i, s) for i, s in enumerate(attackers)))
    elapsed = time.perf_counter() - t0
    steps_after = _steps_logged(runs_root)
    memory.stop()
    await watch
    await asyncio.gather(*(s.close() for s in learners + attackers))
    await teacher.close()
    all_rt = [x for v in stats.round_trips.values() for x in v]
    interactions = [x for k, v in stats.round_trips.items()
                    if k != "open page" and not k.startswith("hostile") for x in v]
    res = {
        "sessions": sessions, "seconds": round(elapsed, 1), "errors": stats.errors[:20], "error_count": len(stats.errors),
        "training_steps_during_load": steps_after - steps_before,
        "interactions": len(interactions), "p50_s": round(_p(interactions, 0.5), 3),
        "p95_s": round(_p(interactions, 0.95), 3), "max_s": round(max(interactions, default=float("nan")), 3),
        "by_kind": {k: {"n": len(v), "p50_s": round(_p(v, 0.5), 3), "p95_s": round(_p(v, 0.95), 3),
                        "max_s": round(max(v), 3)} for k, v in stats.round_trips.items()},
        "requests_total": len(all_rt), "cpu_count": os.cpu_count(), "denoising_every": denoising_every,
        "training": train, "hostile_sessions": hostile,
        "refusals": sorted(set(stats.refusals))[:10], "refusal_count": len(stats.refusals),
        "server_rss_mb": {"before": round(rss_before, 1) if rss_before else None,
                          "max": round(max(memory.samples), 1) if memory.samples else None,
                          "by_quarter": [round(max(q), 1) for q in _quarters(memory.samples)]},
    }
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--denoising-every", type=int, default=3, help="every Nth learner samples on Denoising (0: none)")
    ap.add_argument("--no-training", action="store_true", help="no training job during the test")
    ap.add_argument("--hostile", type=int, default=0, help="hostile learners besides --sessions (see above)")
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.sessions <= 200 or not 1 <= args.seconds <= 3600:
        ap.error("--sessions must be 1..200 and --seconds 1..3600")
    with tempfile.TemporaryDirectory() as tmp:
        port, proc = start_server(Path(tmp))
        try:
            res = asyncio.run(run_load(args.sessions, args.seconds, port, Path(tmp), denoising_every=args.denoising_every,
                                       train=not args.no_training, hostile=args.hostile, server_pid=proc.pid))
        finally:
            stop(proc)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0 if res["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
