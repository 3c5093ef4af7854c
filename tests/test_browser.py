"""Real-browser tests: Playwright drives Debian's Chromium against `streamlit run` on loopback."""
import os
import shutil
import time

import pytest

from .server import serve, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed "
                                 "(apt-get install chromium; .ci/run installs it)")]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def _serve(tmp_path_factory, **extra_env):
    return serve(tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("log") / "streamlit.log", **extra_env)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url, proc = _serve(tmp_path_factory)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def classroom_server(tmp_path_factory):
    url, proc = _serve(tmp_path_factory, DIFFUSION_LAB_CLASSROOM="1", DIFFUSION_LAB_PASSCODE="open-sesame")
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("[data-testid='stAppViewContainer']", timeout=60_000)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
    return page


def test_every_page_opens_without_an_exception(server, browser):
    from playwright.sync_api import expect

    page = _open(browser, server)
    expect(page.get_by_role("heading", name="Diffusion Lab").first).to_be_visible(timeout=90_000)
    for path, title in (("forward_process", "Forward process: adding noise"), ("denoising", "Denoising: from noise to a digit"), ("architecture", "Architecture: inside"),
                        ("training", "Training"), ("worksheet", "Worksheet")):
        page.goto(f"{server}/{path}")
        expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=90_000)
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
        assert page.locator("[data-testid=stException]").count() == 0, path
    page.close()


def test_forward_slider_changes_the_image_and_link_restores_view(server, browser):
    from playwright.sync_api import expect

    page = _open(browser, f"{server}/forward_process?t=100&digit=5")
    formula = page.locator(".katex").nth(1)
    expect(formula).to_contain_text("100", timeout=60_000)
    img = page.locator("[data-testid=stImage] img").nth(1)
    src_before = img.get_attribute("src")
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("Home")                  # t = 0, then five steps right: t = 5
    for _ in range(5):
        slider.press("ArrowRight")
    page.wait_for_timeout(500)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
    expect(formula).to_contain_text("x_{5}", timeout=30_000)
    assert img.get_attribute("src") != src_before
    assert "t=5" in page.url                                     # the new view is in the URL, ready to share
    page.close()


def test_training_page_starts_a_tiny_run_and_the_loss_chart_grows(server, browser):
    from playwright.sync_api import expect

    page = _open(browser, f"{server}/training")
    page.get_by_label("Steps", exact=True).fill("400")
    page.get_by_role("button", name="Start training").click()
    progress = page.locator("[data-testid=stProgress]")
    expect(progress).to_contain_text("running", timeout=60_000)

    def points() -> int:
        return page.evaluate("""() => { const d = document.querySelectorAll('.js-plotly-plot');
            for (const p of d) { if (p.layout && p.layout.title && String(p.layout.title.text).includes('training loss'))
                return p.data.length ? p.data[0].x.length : 0; } return -1; }""")

    deadline = time.time() + 90
    first = -1
    while time.time() < deadline and first <= 0:
        page.wait_for_timeout(1000)
        first = points()
    assert first > 0, "no loss points appeared"
    deadline = time.time() + 60
    later = first
    while time.time() < deadline and later <= first:
        page.wait_for_timeout(1000)
        later = points()
    assert later > first, "the loss chart did not grow"
    page.get_by_role("button", name="Stop").click()
    expect(progress).to_contain_text("idle", timeout=60_000)
    page.close()


def test_classroom_learner_is_locked_out_until_the_passcode(classroom_server, browser):
    from playwright.sync_api import expect

    page = _open(browser, f"{classroom_server}/training")
    start = page.get_by_role("button", name="Start training")
    expect(start).to_be_disabled(timeout=60_000)
    expect(page.get_by_text("Role: learner")).to_be_visible(timeout=30_000)
    box = page.get_by_label("Instructor passcode")
    expect(box).to_be_editable(timeout=30_000)
    box.fill("wrong")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_text("Wrong passcode.")).to_be_visible(timeout=30_000)
    expect(start).to_be_disabled(timeout=30_000)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
    page.wait_for_timeout(2_100)               # a wrong guess makes the next one wait 2 s (ui.roles.PasscodeGuard)
    page.get_by_label("Instructor passcode").fill("open-sesame")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_text("Role: instructor")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Start training")).to_be_enabled(timeout=30_000)
    page.close()


def test_drawing_a_digit_on_the_forward_page(server, browser):
    from playwright.sync_api import expect

    page = _open(browser, f"{server}/forward_process")
    page.get_by_text("draw", exact=True).click()
    canvas = page.locator("canvas").first
    expect(canvas).to_be_visible(timeout=60_000)
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):                           # a vertical stroke: a "1"
        page.mouse.move(x0 + i * 2, y0 + i * box["height"] * 0.06)
    page.mouse.up()
    expect(page.get_by_text("your drawing")).to_be_visible(timeout=60_000)
    page.close()


def test_every_show_me_lands_with_its_evidence_drawn(server, browser):
    """Issue 18's bar: from the Worksheet, each prompt's "Show me" opens its page with the evidence already on
    screen (its marker text visible), no spinner left running and no exception, on a fresh server."""
    from playwright.sync_api import expect

    from ui.worksheet_content import PROMPTS

    page = _open(browser, f"{server}/worksheet")
    slow = {}
    for p in PROMPTS:
        assert p.evidence, f"prompt {p.number} names no evidence to look for"
        page.goto(f"{server}/worksheet")
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
        page.wait_for_timeout(1_000)             # the browser reports its workbook id, and the page reruns once:
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
        button = page.locator(f".st-key-worksheet-show-{p.number.replace('.', '-')} button")   # a click then lands
        expect(button).to_be_visible(timeout=60_000)
        t0 = time.time()
        button.click()
        expect(page.get_by_text(p.evidence).first).to_be_visible(timeout=120_000)
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
        slow[p.number] = round(time.time() - t0, 1)
        assert page.locator("[data-testid=stException]").count() == 0, p.number
        assert page.locator("[data-testid=stSpinner]").count() == 0, p.number
    print("seconds from 'Show me' to a settled page (browser, this machine):", slow)
    page.close()


# The value a widget shows, read from the page: `el` is the element Streamlit marks with the widget's key
# (class st-key-<key with dots as dashes>). Sliders, radios, segmented controls, toggles, inputs (select boxes too:
# a combo box whose input holds the option shown).
WIDGET_VALUE = """(el) => {
  const range = el.querySelector('input[type=range]'); if (range) return range.value;
  const radio = el.querySelector('[data-testid=stRadioOption][data-selected=true]');
  if (radio) return radio.innerText.trim();
  const segment = el.querySelector('button[role=radio][aria-checked=true]'); if (segment) return segment.innerText.trim();
  const box = el.querySelector('input[type=checkbox]'); if (box) return String(box.checked);
  const input = el.querySelector('input, textarea'); if (input) return input.value;
  return null;
}"""


def _widget_value(page, key: str, want: str, timeout_s: float = 60) -> str | None:
    """The value the widget `key` shows once it shows `want` (or at the timeout): the page reruns once the browser
    has reported its workbook id, so the first reading can come from a page still being drawn."""
    selector = ".st-key-" + key.replace(".", "-")
    deadline, got = time.time() + timeout_s, None
    while time.time() < deadline:
        if page.locator(selector).count():
            got = page.locator(selector).first.evaluate(WIDGET_VALUE)
            if got == want:
                return got
        page.wait_for_timeout(250)
    return got


def test_every_preset_url_in_a_fresh_browser_lands_on_its_panel_with_its_values(server, browser):
    """Issue 20's bar: each prompt's preset link (what the Worksheet's export links to when the learner made no view
    of their own), opened in a new browser context (nothing in its session or storage), shows the prompt's evidence
    and every widget the preset sets at the preset's value; a preset value with no widget (a panel's switch) stays
    in the URL."""
    from urllib.parse import parse_qs, urlencode, urlsplit

    from playwright.sync_api import expect

    from ui.present import url_path
    from ui.worksheet_content import PROMPTS

    for p in PROMPTS:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{server}/{url_path(p)}" + (f"?{urlencode(p.preset)}" if p.preset else ""))
        expect(page.get_by_text(p.evidence).first).to_be_visible(timeout=120_000)
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
        assert urlsplit(page.url).path == f"/{url_path(p)}", p.number
        for name, value in p.preset.items():
            key = f"{p.namespace}.{name}"
            if page.locator(".st-key-" + key.replace(".", "-")).count():
                assert _widget_value(page, key, str(value)) == str(value), (p.number, name)
            else:
                assert parse_qs(urlsplit(page.url).query).get(name) == [str(value)], (p.number, name, page.url)
        assert page.locator("[data-testid=stException]").count() == 0, p.number
        context.close()


def test_an_answer_survives_show_me_the_sidebar_a_reload_and_a_server_restart(tmp_path_factory, browser):
    """Issue 20's bar: the learner's answer is kept per browser on the server's disk, not in the page's state; a
    figure pinned to it comes back in the zip export; the export's link reopens the learner's own view in a new
    browser."""
    import io
    import zipfile

    from playwright.sync_api import expect

    from .server import free_port

    runs, books, port = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("books"), free_port()
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    url, proc = serve(runs, log, port=port, DIFFUSION_LAB_WORKBOOKS=str(books))
    answer = "Noise is added in small steps, so each step is easy to undo."
    box = ".st-key-worksheet-answer-1-2 textarea"
    try:
        page = _open(browser, f"{url}/worksheet")
        page.locator(box).fill(answer)
        page.locator(box).press("Tab")                      # leaving the box saves it
        page.wait_for_timeout(500)
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
        expect(page.locator(".st-key-worksheet-show-1-2 button")).to_have_count(1)    # not a stale copy beside it
        page.locator(".st-key-worksheet-show-1-2 button").click()
        page.wait_for_url("**/forward_process**", timeout=60_000)
        expect(page.get_by_text("noise level t")).to_be_visible(timeout=60_000)      # the learner looks at it
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
        slider = page.locator(".st-key-forward-t input[type=range]")
        slider.focus()
        for _ in range(3):                                       # their own view: t = 503, not the preset's 500
            slider.press("ArrowRight")
        page.wait_for_url("**t=503**", timeout=60_000)
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
        page.get_by_text("Pin a figure to an answer").click()
        pin = page.locator(".st-key-pins-pin button").first     # (a button with help= holds a second one for it)
        expect(pin).to_be_visible(timeout=30_000)
        option = page.get_by_role("option").filter(has_text="pixels of x_t vs N(0, 1)")
        for attempt in range(3):                                 # the histogram, to 1.2 (the Show me's prompt); a
            page.locator(".st-key-pins-figure input").click()    # click while the expander still opens is lost
            try:
                option.wait_for(timeout=10_000)
                break
            except Exception:
                if attempt == 2:
                    raise
        option.click()
        page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
        pin.click()
        expect(page.get_by_text("to your answer to 1.2")).to_be_visible(timeout=60_000)
        page.get_by_role("link", name="Worksheet").click()
        expect(page.locator(box)).to_have_value(answer, timeout=60_000)
        page.reload()
        expect(page.locator(box)).to_have_value(answer, timeout=60_000)
    finally:
        stop(proc)
    assert any(books.glob("*.json"))
    url, proc = serve(runs, log, port=port, DIFFUSION_LAB_WORKBOOKS=str(books))   # same origin, new server
    try:
        page.goto(f"{url}/worksheet")
        expect(page.locator(box)).to_have_value(answer, timeout=90_000)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download my answers (Markdown)").click()
        exported = open(download.value.path(), encoding="utf-8").read()
        entry = exported.split("## 1.2 ")[1].split("## ")[0]
        assert answer in entry and f"]({url}/forward_process?" in entry and "(the view I looked at)" in entry
        assert "**Figure 1.2.1: pixels of x_t vs N(0, 1)**" in entry
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download with the 1 pinned figure (zip)").click()
        z = zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read()))
        md = z.read("answers.md").decode()
        png = next(n for n in z.namelist() if n.endswith(".png"))
        assert f"![pixels of x_t vs N(0, 1)]({png})" in md.split("## 1.2 ")[1].split("## ")[0]
        assert z.read(png).startswith(b"\x89PNG") and "N(0, 1)" in z.read(png[:-3] + "csv").decode()
        link = entry.split("Evidence: [Forward process](")[1].split(")")[0]
        page.close()
        fresh = browser.new_context(viewport={"width": 1400, "height": 1000})   # the teacher opens the link
        view = fresh.new_page()
        view.goto(link)
        expect(view.get_by_text("noise level t")).to_be_visible(timeout=90_000)
        assert _widget_value(view, "forward.t", "503") == "503" and _widget_value(view, "forward.digit", "3") == "3"
        fresh.close()
    finally:
        stop(proc)


def test_the_instructor_stays_unlocked_across_a_reload_and_a_link_until_locking(classroom_server, browser):
    """The role lives in a signed, expiring token in the browser's localStorage (ui.roles): never in the URL."""
    from playwright.sync_api import expect

    page = _open(browser, f"{classroom_server}/training")
    expect(page.get_by_text("Role: learner")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(2_100)                    # a wrong guess by an earlier test may ask for a short wait
    page.get_by_label("Instructor passcode").fill("open-sesame")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_text("Role: instructor")).to_be_visible(timeout=30_000)
    page.reload()
    expect(page.get_by_text("Role: instructor")).to_be_visible(timeout=60_000)
    assert "open-sesame" not in page.url and "token" not in page.url
    page.goto(f"{classroom_server}/denoising?seed=5")    # a link opened in the same browser
    expect(page.get_by_text("Role: instructor")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Lock (back to learner)").click()
    expect(page.get_by_text("Role: learner")).to_be_visible(timeout=30_000)
    page.reload()
    expect(page.get_by_text("Role: learner")).to_be_visible(timeout=60_000)
    page.wait_for_timeout(3_000)                    # the stored token, if any were left, would arrive by now
    expect(page.get_by_text("Role: learner")).to_be_visible()
    page.close()


def test_the_geometry_lab_trains_in_seconds_and_draws_paths_and_field(server, browser):
    """Issue 22's bar, driven as a learner would: Train on two moons, then the fit, the field and the paths."""
    from playwright.sync_api import expect

    page = _open(browser, f"{server}/geometry?data=moons&objective=ddpm&seed=5")
    expect(page.get_by_role("button", name="Train")).to_be_visible(timeout=60_000)
    t0 = time.time()
    page.get_by_role("button", name="Train").click()
    expect(page.get_by_text("Fit (").first).to_be_visible(timeout=120_000)
    waited = time.time() - t0
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
    expect(page.get_by_text("learned score at t").first).to_be_visible(timeout=60_000)       # the field as arrows
    expect(page.get_by_text("From noise to data: the sampling paths")).to_be_visible()
    assert page.locator(".js-plotly-plot").count() >= 5
    assert page.locator("[data-testid=stException]").count() == 0
    assert "seed=5" in page.url and "objective=ddpm" in page.url
    print(f"geometry lab: Train to a drawn fit in {waited:.1f} s (browser, this machine)")
    page.close()
