"""augkit preprocess reads photos as shown: --exif-orientation and --background, kept in the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from augkit.io.images import read_image


@pytest.fixture
def photos(tmp_path):
    """An ImageFolder: a phone JPEG stored 8 wide x 16 high with orientation 6, an icon of transparent black."""
    root = tmp_path / "src"
    (root / "a").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown 16 wide x 8 high
    Image.new("RGB", (8, 16), (200, 100, 50)).save(root / "a" / "phone.jpg", exif=exif.tobytes(), quality=95)
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(root / "a" / "icon.png")
    return root


def _outputs(out):
    return {p.stem: read_image(p) for p in sorted((out / "train" / "a").iterdir())}


def test_preprocess_writes_photos_upright_and_alpha_on_white_by_default(photos, tmp_path, preprocess_cli):
    out = tmp_path / "out"
    assert preprocess_cli(photos, out, "--format", "folder").exit_code == 0
    images = _outputs(out)
    assert images["phone"].shape == (8, 16, 3)
    assert images["icon"].min() == 255
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["exif_orientation"], config["background"]) == (True, [255, 255, 255])


def test_preprocess_keeps_pixels_as_stored_and_composites_on_the_colour_asked(photos, tmp_path, preprocess_cli):
    out = tmp_path / "out"
    result = preprocess_cli(photos, out, "--format", "folder", "--no-exif-orientation", "--background", "0,128,255")
    assert result.exit_code == 0, result.output
    images = _outputs(out)
    assert images["phone"].shape == (16, 8, 3)
    assert images["icon"].reshape(-1, 3).tolist() == [[0, 128, 255]] * 64
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["exif_orientation"], config["background"]) == (False, [0, 128, 255])
    # The same settings again: already complete (the background compares equal after JSON).
    assert "already complete" in preprocess_cli(photos, out, "--format", "folder", "--no-exif-orientation",
                                                "--background", "0,128,255").output  # fmt: skip


@pytest.mark.parametrize("changed", [["--no-exif-orientation"], ["--background", "black"]])
def test_rerun_with_other_reading_settings_is_refused(photos, tmp_path, preprocess_cli, assert_fails, changed):
    out = tmp_path / "out"
    assert preprocess_cli(photos, out, "--format", "folder").exit_code == 0
    flag = changed[0].replace("--no-", "--")
    refused = preprocess_cli(photos, out, "--format", "folder", *changed)
    assert_fails(refused, 2, "holds a run with other settings", flag)


def test_background_that_is_not_a_colour_is_one_line(photos, tmp_path, preprocess_cli, assert_fails):
    assert_fails(preprocess_cli(photos, tmp_path / "out", "--background", "purple"), 2,
                 "background must be white, black or R,G,B", "'purple'")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_packed_output_holds_the_composited_pixels(photos, tmp_path, preprocess_cli):
    out = tmp_path / "out"
    assert preprocess_cli(photos, out, "--size", "8", "--background", "black").exit_code == 0
    images = np.load(out / "train_images.npy")
    assert images.shape == (2, 8, 8, 3) and images[0].max() == 0  # icon.png sorts first
