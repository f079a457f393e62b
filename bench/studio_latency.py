"""``augkit studio``'s update latency in a browser against the loop it replaces, in one run.

The studio: the real ``augkit studio`` (a subprocess) on 4 sample photos resized to 256x256,
its page in headless Chromium (Playwright), 6 variants each (a 1052x1304 sheet). One repeat is one
slider change (an arrow key on rotate's limit slider: one ``input`` event, as a user's) until the
new sheet has loaded: the page's own ``window.studio.lastUpdateMs``, from the change to the
image's load, and the server's share (the answer's ``ms``).

The peer: the loop without the studio, ``augkit preview PHOTOS -p pipeline.yaml -n 6 --rows 4
--sample-seed 0 -o sheet.png`` run as a subprocess (the page's own command, its exported spec),
wall time from start to exit; before timing, its PNG is checked to be the page's sheet byte for
byte. Neither counts the human part of the loop (editing YAML, opening the PNG).

Repeats are interleaved (bench/_repeats.py), the first dropped; medians, and the median of the
per-repeat ratios. docs/studio_screenshot.py starts the studio with ``running_studio`` too.

    python bench/studio_latency.py [--repeats 9] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _repeats import interleaved  # noqa: E402

import augkit  # noqa: E402

CLI = [sys.executable, "-m", "augkit"]
PIPELINE = "crop(size=0.8, mode=random_resized); rotate(limit=15, p=0.7); brightness(limit=0.2, p=0.7); contrast(limit=0.2, p=0.7); hflip"
SIDE = 256  # pixels a side of the photos shown


@contextlib.contextmanager
def running_studio(args: Sequence[str], cwd: Path | None = None) -> Iterator[str]:
    """``augkit studio ARGS`` running in ``cwd``; yields its URL; stopped with Ctrl-C (SIGINT), killed
    if it has not stopped 30 s later. Raises RuntimeError when it does not start."""
    process = subprocess.Popen([*CLI, "studio", *args], cwd=cwd, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("augkit studio: http"):
            raise RuntimeError(f"augkit studio did not start: {line!r}")
        yield line.split()[2]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def chromium_path(given: str | None) -> str | None:
    """The Chromium to drive: ``given``, else the system's (Debian's /usr/bin/chromium), else None
    (Playwright's own download)."""
    return given or shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for_sheet(page: Page, after: int) -> None:
    """Until a sheet after version ``after`` has loaded and no request is in flight."""
    page.wait_for_function(
        """after => window.studio.version > after && /^updated in/.test(document.querySelector('#status').textContent)
                    && !document.querySelector('#status').textContent.includes('rendering')""",
        arg=after,
    )  # fmt: skip


def sheet_png(page: Page) -> bytes:
    return base64.b64decode(page.get_attribute("#sheet", "src").split(",", 1)[1])


def slider_change(page: Page) -> Callable[[], tuple[float, float]]:
    """A repeat for ``interleaved``: one step of rotate's limit slider; (page ms, server ms)."""
    slider = page.locator('#step-list .step[data-name="rotate"] .param[data-param="limit"] input[type=range]')

    def go() -> tuple[float, float]:
        slider.focus()
        version = page.evaluate("window.studio.version")
        with page.expect_response("**/api/sheet") as answer:
            page.keyboard.press("ArrowRight")
        wait_for_sheet(page, version)
        return page.evaluate("window.studio.lastUpdateMs"), answer.value.json()["ms"]

    return go


def preview_run(words: list[str], folder: Path) -> Callable[[], float]:
    """A repeat for ``interleaved``: the page's ``augkit preview`` command as a subprocess, in ms."""

    def go() -> float:
        start = time.perf_counter()
        subprocess.run([*CLI, *words[1:], "-o", "sheet.png"], cwd=folder, check=True, capture_output=True)
        return (time.perf_counter() - start) * 1e3

    return go


def write_photos(folder: Path) -> None:
    """The first 4 sample photos (sorted), area-resized to SIDE x SIDE, as PNG."""
    for path in sorted((augkit.sample_data_dir() / "photos").glob("*.jpg"))[:4]:
        image = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{path.stem}.png"), image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH, else Playwright's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as driver:
        folder = Path(tmp)
        (folder / "photos").mkdir()
        write_photos(folder / "photos")
        browser = driver.chromium.launch(executable_path=chromium_path(args.chromium))
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
              f"python {platform.python_version()}, Chromium {browser.version}")  # fmt: skip
        with running_studio([str(folder / "photos"), "-p", PIPELINE, "-n", "6", "--rows", "4"]) as url:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
            page.goto(url)
            wait_for_sheet(page, 0)
            with page.expect_download() as download:
                page.click("#export")
            download.value.save_as(folder / "pipeline.yaml")
            words = shlex.split(page.inner_text("#command"))
            preview_run(words, folder)()
            if (folder / "sheet.png").read_bytes() != sheet_png(page):
                raise SystemExit("augkit preview did not write the page's sheet: the comparison would be unfair")
            height, width = cv2.imread(str(folder / "sheet.png")).shape[:2]
            print(f"sheet {height}x{width}: 4 photos of {SIDE} px x 6 variants; peer: {shlex.join(words)}")
            times = interleaved({"studio": slider_change(page), "preview": preview_run(words, folder)}, args.repeats)
        browser.close()
    page_ms = [ms for ms, _ in times["studio"]]
    server_ms = [ms for _, ms in times["studio"]]
    ratio = statistics.median(p / s for p, s in zip(times["preview"], page_ms))
    print(f"\n{'update':<34} {'ms':>7}")
    print(f"{'augkit preview (subprocess)':<34} {statistics.median(times['preview']):>7.0f}")
    print(f"{'augkit studio (change to load)':<34} {statistics.median(page_ms):>7.0f}   (preview / studio: {ratio:.1f}x)")
    print(f"{'  of which the server':<34} {statistics.median(server_ms):>7.0f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
