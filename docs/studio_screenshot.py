"""Take the README's screenshot of ``augkit studio``: docs/images/studio.png.

Starts ``augkit studio sample_data/photos -p PIPELINE`` from the repository's root (so the page
shows that relative path, not this machine's), opens the page in headless Chromium (Playwright)
at 1440x900, waits for the first sheet, and saves the window as a 256-colour PNG (Pillow's
quantiser with dithering: about a third of the bytes of the full-colour PNG).

    .venv/bin/python docs/studio_screenshot.py [-o docs/images/studio.png] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from studio_latency import chromium_path, running_studio, wait_for_sheet  # noqa: E402

# What the page can show off: augkit's geometric and colour steps and an albumentations transform.
PIPELINE = ("crop(size=0.8, mode=random_resized, scale=[0.5, 1.0]); rotate(limit=20, p=0.7); brightness(limit=0.2, p=0.7); "
            "contrast(limit=0.2, p=0.7); hflip; GaussNoise(std_range=[0.03, 0.08], p=0.5)")  # fmt: skip
VIEWPORT = {"width": 1440, "height": 900}  # CSS pixels, at a device scale of 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "images" / "studio.png")
    parser.add_argument("-n", "--variants", type=int, default=4, help="variants per photo (4 fit beside the panel at 1440 px)")
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH, else Playwright's)")
    args = parser.parse_args()
    studio = ["sample_data/photos", "-p", PIPELINE, "-n", str(args.variants), "--rows", "4"]
    with running_studio(studio, cwd=ROOT) as url, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium_path(args.chromium))
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        wait_for_sheet(page, 0)
        shot = page.screenshot()
        browser.close()
    picture = Image.open(io.BytesIO(shot)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"{args.out}: {picture.width}x{picture.height}, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
