"""``augkit studio``'s page in a real browser: the real command (a subprocess on 4 real photos of
256x256), its page in headless Chromium driven with Playwright as a user drives it (search, mouse
drags, typing, clicks, a file chosen, a download), and what the page shows afterwards. The API
itself is tested without a browser in tests/test_studio.py.

Needs Chromium (Debian's /usr/bin/chromium, or Playwright's own) and the playwright package: the
tests skip without them, and fail instead when AUGKIT_REQUIRE_BROWSER=1 (CI sets it: .ci/run).
"""

from __future__ import annotations

import base64
import os
import queue
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
try:
    from playwright import sync_api as playwright
except ImportError:  # the skip (or, in CI, the failure) comes from the browser fixture, with the reason
    playwright = None

from augkit.io.datasets import sample_data_dir  # noqa: E402

CLI = [sys.executable, "-m", "augkit"]
# The start pipeline: rotate's limit is a slider to drag, its p and brightness's p number fields to type into.
START = "crop(size=0.8, mode=random_resized); rotate(limit=15, p=0.7); brightness(limit=0.2, p=0.7); hflip"
START_STEPS = ["crop", "rotate", "brightness", "hflip"]
SIDE = 256  # pixels: the photos are resized to SIDE x SIDE, the size the latency is measured at
SERVER_WAIT_S = 60  # a guard against a server that never starts or never stops, not a measure
LATENCY_CHANGES = 9  # slider changes timed; the first is dropped (the page's and server's warm-up)


def unavailable(reason: str) -> None:
    """Skip for want of a browser, unless the environment promises one (CI), then fail."""
    if os.environ.get("AUGKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AUGKIT_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------- the server


def first_line(process: subprocess.Popen, seconds: float) -> str:
    """The first line ``process`` prints, or "" when none comes within ``seconds``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        return ""


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 4 sample photos, area-resized to SIDE x SIDE, as PNG."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((sample_data_dir() / "photos").glob("*.jpg"))[:4]:
        image = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        assert cv2.imwrite(str(folder / f"{path.stem}.png"), image)
    return folder


@pytest.fixture(scope="module")
def server(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``augkit studio PHOTOS -p START --port 0`` running; yields its URL. Stopped with Ctrl-C
    (SIGINT) at the end, killed if it does not stop; it must then have exited 0 and logged no traceback."""
    log = tmp_path_factory.mktemp("server") / "stderr.txt"
    with log.open("w") as stderr:  # a file, not a pipe: a pipe nobody reads could fill and stall the server
        process = subprocess.Popen([*CLI, "studio", str(photos), "-p", START, "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
    try:
        line = first_line(process, SERVER_WAIT_S)
        assert line.startswith("augkit studio: http://127.0.0.1:"), line + log.read_text()
        yield line.split()[2]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=SERVER_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert process.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium: the system's (Debian's /usr/bin/chromium) if on PATH, else Playwright's own."""
    if playwright is None:
        unavailable("the python package playwright is not installed (pip install -e '.[dev]')")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with playwright.sync_playwright() as driver:
        try:
            launched = driver.chromium.launch(executable_path=executable)
        except playwright.Error as error:
            unavailable(f"Chromium does not start ({executable or 'no chromium on PATH'}): {str(error).splitlines()[0]}")
        yield launched
        launched.close()


@dataclass
class Page:
    """The studio's page in a fresh browser context, and what went wrong in it while a test ran."""

    page: object  # playwright.sync_api.Page
    server_errors: list[str] = field(default_factory=list)  # "<status> <url>" of each 5xx answer
    script_errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page's script
    sheets_in_flight: int = 0
    most_sheets_in_flight: int = 0  # the page promises at most one POST /api/sheet at a time

    def __post_init__(self) -> None:
        self.page.on("response", self._answered)
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        self.page.on("request", self._sent)
        self.page.on("requestfinished", self._done)
        self.page.on("requestfailed", self._done)

    def _answered(self, response) -> None:
        if response.status >= 500:
            self.server_errors.append(f"{response.status} {response.url}")

    def _sent(self, request) -> None:
        if request.url.endswith("/api/sheet"):
            self.sheets_in_flight += 1
            self.most_sheets_in_flight = max(self.most_sheets_in_flight, self.sheets_in_flight)

    def _done(self, request) -> None:
        if request.url.endswith("/api/sheet"):
            self.sheets_in_flight -= 1

    # -- reading the page

    @property
    def version(self) -> int:
        """How many sheets the page has shown (window.studio.version)."""
        return self.page.evaluate("window.studio.version")

    def sheet_png(self) -> bytes:
        """The PNG bytes the page shows now (#sheet's data: URL)."""
        head, data = self.page.get_attribute("#sheet", "src").split(",", 1)
        assert head == "data:image/png;base64", head
        return base64.b64decode(data)

    def steps(self) -> list[str]:
        """The step cards' names, top to bottom."""
        return self.page.eval_on_selector_all("#step-list .step", "cards => cards.map(c => c.dataset.name)")

    def card(self, name: str):
        return self.page.locator(f'#step-list .step[data-name="{name}"]')

    def param(self, step: str, key: str):
        return self.card(step).locator(f'.param[data-param="{key}"]')

    def wait_for_new_sheet(self, after: int) -> bytes:
        """Wait until a sheet after version ``after`` has loaded and no request is in flight (the
        status line then says "updated in ..." alone); returns its PNG bytes."""
        self.page.wait_for_function(
            """after => window.studio.version > after && Number(document.querySelector('#sheet').dataset.version) === window.studio.version
                        && /^updated in/.test(document.querySelector('#status').textContent)
                        && !document.querySelector('#status').textContent.includes('rendering')""",
            arg=after,
        )  # fmt: skip
        return self.sheet_png()

    def assert_shows_no_error(self) -> None:
        """Nothing on the page says something went wrong: no error in the status line, above the
        sheet, at a step or a parameter; the sheet not dimmed as stale."""
        assert "error" not in self.page.get_attribute("#status", "class"), self.page.inner_text("#status")
        assert self.page.inner_text("#sheet-errors").strip() == ""
        messages = self.page.eval_on_selector_all(".param-error, .step-error", "nodes => nodes.map(n => n.textContent).filter(Boolean)")
        assert messages == []
        assert "stale" not in (self.page.get_attribute("#sheet", "class") or "")

    # -- using it

    def drag(self, locator, to_fraction: float) -> None:
        """A real mouse drag on a range input: press on the middle of its track, move in steps to
        ``to_fraction`` of its width, release (input events fire all the way, as for a user)."""
        box = locator.bounding_box()
        y = box["y"] + box["height"] / 2
        self.page.mouse.move(box["x"] + box["width"] / 2, y)
        self.page.mouse.down()
        self.page.mouse.move(box["x"] + box["width"] * to_fraction, y, steps=8)
        self.page.mouse.up()

    def type_into(self, locator, text: str) -> None:
        locator.fill(text)
        locator.press("Enter")


@pytest.fixture
def studio_page(browser, server: str) -> Iterator[Page]:
    """The page, freshly loaded, its first sheet shown; fails the test if any request got a 5xx
    or the page's script threw."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = Page(context.new_page())
    try:
        page.page.goto(server)
        page.wait_for_new_sheet(0)
        yield page
    finally:
        context.close()
    assert page.server_errors == [], page.server_errors
    assert page.script_errors == [], page.script_errors
    assert page.most_sheets_in_flight == 1


# ----------------------------------------------------------------------------- the tests


def test_the_page_opens_on_the_start_pipeline_and_its_sheet(studio_page, photos):
    page = studio_page.page
    assert studio_page.steps() == START_STEPS
    assert page.get_attribute("#sheet", "data-version") == str(studio_page.version) == "1"
    sheet = cv2.imdecode(np.frombuffer(studio_page.sheet_png(), np.uint8), cv2.IMREAD_COLOR)
    assert sheet is not None and sheet.shape[0] > 4 * SIDE // 2  # 4 rows of photos
    assert shlex.split(page.inner_text("#command"))[:3] == ["augkit", "preview", str(photos)]
    assert str(photos) in page.inner_text("#inputs")
    assert page.input_value("#variants") == "6" and page.input_value("#rows") == "4"
    assert studio_page.param("rotate", "limit").locator("input[type=number]").input_value() == "15"
    studio_page.assert_shows_no_error()


def test_a_step_added_through_the_search_changes_the_sheet(studio_page):
    before, version = studio_page.sheet_png(), studio_page.version
    studio_page.page.click("#add-step")
    studio_page.page.keyboard.type("Gaus")
    studio_page.page.click('#add-results li[data-name="GaussNoise"]')
    assert studio_page.steps() == [*START_STEPS, "GaussNoise"]
    assert studio_page.wait_for_new_sheet(version) != before
    studio_page.card("GaussNoise").locator('.param[data-param="p"]').wait_for()  # its controls, from its schema
    studio_page.assert_shows_no_error()


def test_dragging_a_slider_changes_the_parameter_and_the_sheet(studio_page):
    page = studio_page.page
    before, version = studio_page.sheet_png(), studio_page.version
    limit = studio_page.param("rotate", "limit")
    studio_page.drag(limit.locator("input[type=range]"), 0.8)  # limit in [-360, 360]: about 216
    dragged = float(limit.locator("input[type=range]").input_value())
    assert 150 < dragged < 290, dragged
    assert float(limit.locator("input[type=number]").input_value()) == dragged  # the number beside it follows
    assert studio_page.wait_for_new_sheet(version) != before
    assert page.evaluate("window.studio.state.steps[1].params.limit") == dragged
    studio_page.assert_shows_no_error()


def test_invalid_values_show_augkits_message_at_their_control_until_fixed(studio_page):
    page = studio_page.page
    studio_page.card("crop").locator("input.enabled").uncheck()  # the errors' step indices then skip a card
    studio_page.wait_for_new_sheet(1)
    version = studio_page.version  # the last good sheet's
    limit, p = studio_page.param("rotate", "limit"), studio_page.param("brightness", "p")
    studio_page.type_into(limit.locator("input[type=number]"), "500")
    studio_page.type_into(p.locator("input[type=number]"), "2")
    page.wait_for_function("""() => [...document.querySelectorAll('.param-error')].filter(n => n.textContent).length === 2
                                    && !document.querySelector('#status').textContent.includes('rendering')""")  # fmt: skip
    limit_error, p_error = limit.locator(".param-error").inner_text(), p.locator(".param-error").inner_text()
    assert "rotate" in limit_error and "within [-360, 360]" in limit_error, limit_error
    assert "brightness" in p_error and "probability in [0, 1]" in p_error, p_error
    assert "\n" not in limit_error + p_error  # one line each
    assert "2 errors" in page.inner_text("#status")
    assert "stale" in page.get_attribute("#sheet", "class")  # the last good sheet stays, dimmed
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "' not in body
    assert studio_page.version == version  # nothing new shown for an invalid pipeline

    studio_page.type_into(limit.locator("input[type=number]"), "30")
    studio_page.type_into(p.locator("input[type=number]"), "0.9")
    studio_page.wait_for_new_sheet(version)
    studio_page.assert_shows_no_error()


def test_the_exported_spec_and_command_write_the_sheet_the_page_shows(studio_page, tmp_path):
    page = studio_page.page
    version = studio_page.version
    page.click("#add-step")
    page.keyboard.type("GaussN")
    page.keyboard.press("Enter")  # the keyboard's way: the first match
    assert studio_page.steps() == [*START_STEPS, "GaussNoise"]
    studio_page.type_into(studio_page.param("rotate", "p").locator("input[type=number]"), "1")
    shown = studio_page.wait_for_new_sheet(version)
    with page.expect_download() as download:
        page.click("#export")
    assert download.value.suggested_filename == "pipeline.yaml"
    download.value.save_as(tmp_path / "pipeline.yaml")
    words = shlex.split(page.inner_text("#command"))
    assert words[:2] == ["augkit", "preview"] and "pipeline.yaml" in words
    result = subprocess.run([*CLI, *words[1:], "-o", "sheet.png"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sheet.png").read_bytes() == shown


def test_importing_a_spec_file_replaces_the_pipeline_and_seed(studio_page, tmp_path):
    page = studio_page.page
    version = studio_page.version
    spec = tmp_path / "aug.yaml"
    spec.write_text("seed: 3\nsteps:\n  - vflip: {p: 1}\n  - Blur: {blur_limit: [3, 7]}\n")
    page.set_input_files("#import-file", spec)
    page.wait_for_function("() => document.querySelectorAll('#step-list .step').length === 2")
    assert studio_page.steps() == ["vflip", "Blur"]
    assert page.input_value("#seed") == "3"
    studio_page.wait_for_new_sheet(version)
    assert page.evaluate("window.studio.state.seed") == 3
    studio_page.assert_shows_no_error()


def test_moving_a_step_up_and_back_down_changes_the_sheet_and_restores_it(studio_page):
    start, version = studio_page.sheet_png(), studio_page.version
    studio_page.card("hflip").locator("button.up").click()
    assert studio_page.steps() == ["crop", "rotate", "hflip", "brightness"]
    moved = studio_page.wait_for_new_sheet(version)
    assert moved != start
    version = studio_page.version
    studio_page.card("hflip").locator("button.down").click()
    assert studio_page.steps() == START_STEPS
    assert studio_page.wait_for_new_sheet(version) == start  # the same pipeline draws the same sheet
    studio_page.assert_shows_no_error()


def test_update_latency_of_a_slider_change(studio_page, record_property):
    """From a slider change to the new sheet's load (window.studio.lastUpdateMs), 4 photos x 6
    variants of 256 px. Reported, never asserted on (no timed assertions)."""
    slider = studio_page.param("rotate", "limit").locator("input[type=range]")
    slider.focus()
    latencies = []
    for _ in range(LATENCY_CHANGES):
        version = studio_page.version
        studio_page.page.keyboard.press("ArrowRight")  # one step of the slider: one change
        studio_page.wait_for_new_sheet(version)
        studio_page.assert_shows_no_error()
        latencies.append(studio_page.page.evaluate("window.studio.lastUpdateMs"))
    assert studio_page.page.evaluate("window.studio.state.steps[1].params.limit") == 15 + LATENCY_CHANGES
    kept = latencies[1:]
    median = statistics.median(kept)
    record_property("studio_update_ms_median", median)
    record_property("studio_update_ms", kept)
    print(f"\naugkit studio: update latency, 4 images x 6 variants of {SIDE} px: median {median:.0f} ms "
          f"over {len(kept)} slider changes ({', '.join(f'{ms:.0f}' for ms in kept)})")  # fmt: skip
