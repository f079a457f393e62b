"""The command line: each command on real data, and every user mistake as one line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import augkit
from augkit.cli.main import COMMANDS, cli

DIGITS = augkit.sample_data_dir() / "digits"


def invoke(*args: str, cwd: Path | None = None):
    """Run the CLI in-process (in ``cwd`` if given); exceptions other than exits propagate."""
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        os.chdir(previous)


def assert_user_error(result, *fragments: str) -> None:
    """Exit 2, one line on stderr starting with 'Error:', no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def pixels_of(files: list[Path]) -> np.ndarray:
    """All pixels of the files, read independently of augkit (cv2 straight from disk)."""
    return np.concatenate([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).reshape(-1) for f in files]) / 255.0


# ----------------------------------------------------------------------------- start-up


SNIPPET = """
import sys
from augkit.cli.main import cli
try:
    cli({args!r}, prog_name="augkit")
except SystemExit as exit:
    assert exit.code == 0, exit.code
heavy = sorted(m for m in ("torch", "albumentations", "cv2", "matplotlib", "starlette", "uvicorn") if m in sys.modules)
print("LOADED", heavy)
"""


# `augkit train --help` (and lr-find's, which takes the same options) lists the choices of augkit.train's registries, which needs torch
# (tests/test_train_cli.py checks it lists them); every other help stays light.
@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in COMMANDS if name not in ("train", "lr-find"))])
def test_help_loads_none_of_the_heavy_libraries(args):
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(args=args)], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
    assert "Examples:" in out.stdout


def test_import_augkit_loads_neither_torch_nor_click():
    code = "import sys, augkit; print(sorted(m for m in ('torch', 'click', 'albumentations', 'cv2', 'starlette', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_using_pipelines_does_not_load_torch_either():
    code = "import sys, augkit; augkit.load_pipeline('hflip; RandomGamma'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_python_dash_m_augkit_and_version():
    out = subprocess.run([sys.executable, "-m", "augkit", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"augkit, version {augkit.__version__}"


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["stat"])
    assert result.exit_code == 2 and "No such command 'stat'" in result.output


# ----------------------------------------------------------------------------- stats


def test_stats_default_is_the_sample_digits_training_split_and_matches_numpy():
    result = invoke("stats", "--json", "--workers", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    files = sorted((DIGITS / "train").glob("*/*.png"))
    assert report["images"] == len(files) and report["channels"] == 1 and report["skipped"] == []  # gray PNGs: 1 channel
    expected = pixels_of(files)
    np.testing.assert_allclose(report["mean"], [expected.mean()], rtol=1e-9)
    np.testing.assert_allclose(report["std"], [expected.std()], rtol=1e-9)


def test_stats_json_and_the_stats_file_use_the_same_words(tmp_path):
    report = json.loads(invoke("stats", "--json", "--workers", "1", "-o", str(tmp_path / "s.json")).output)
    saved = json.loads((tmp_path / "s.json").read_text())
    files = sorted((DIGITS / "train").glob("*/*.png"))
    assert report["images"] == saved["images"] == len(files)
    assert report["count"] == saved["count"] == 64 * len(files)  # pixels per channel: 8 x 8 digits


def test_stats_lists_unreadable_files_and_still_succeeds(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / label / f"{i}.png"), np.full((4, 5, 3), 40 * i, np.uint8))
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "b" / "empty.jpg").write_bytes(b"")
    result = invoke("stats", str(tmp_path), "--json", "--workers", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 6
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"broken.png", "empty.jpg"} and "empty" in reasons["empty.jpg"]
    human = invoke("stats", str(tmp_path), "--workers", "1")
    assert "skipped 2 unreadable file(s)" in human.output and "broken.png" in human.output


def test_stats_output_feeds_standardize(tmp_path):
    result = invoke("stats", "-o", str(tmp_path / "stats.json"), "--workers", "1")
    assert result.exit_code == 0 and "wrote" in result.output
    pipeline = augkit.load_pipeline({"steps": [{"standardize": {"stats": "stats.json"}}]}, base_dir=tmp_path)
    dataset = augkit.open_dataset(DIGITS)
    batch = np.stack([pipeline(dataset.read(i), index=i) for i in range(len(dataset))]).astype(np.float64)
    np.testing.assert_allclose(batch.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(batch.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_stats_val_and_all_splits_count_the_right_files():
    val = json.loads(invoke("stats", "--split", "val", "--json", "--workers", "1").output)
    everything = json.loads(invoke("stats", "--split", "all", "--json", "--workers", "1").output)
    assert val["images"] == len(list((DIGITS / "val").glob("*/*.png")))
    assert everything["images"] == len(list(DIGITS.glob("*/*/*.png")))


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["stats", "no/such/folder"], ["no/such/folder"]),
        (["stats", "--workers", "0"], ["--workers"]),
        (["stats", "--split", "test"], ["--split"]),
        (["stats", "-o", "."], ["-o .: is a folder"]),  # tests/test_outputs.py has every output's cases
    ],
)
def test_stats_user_mistakes_are_one_line_exit_2(tmp_path, args, fragments):
    result = invoke(*args, cwd=tmp_path)
    if args[1] in ("--workers", "--split"):  # click's own usage errors keep click's format
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert all(f in result.output for f in fragments)
    else:
        assert_user_error(result, *fragments)


def test_stats_on_a_flat_folder_without_a_val_split_says_so(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((3, 3, 3), np.uint8))
    assert_user_error(invoke("stats", str(tmp_path), "--split", "val"), "val")


# ----------------------------------------------------------------------------- preview


def test_preview_default_writes_a_png_of_the_sample_photos_byte_identical_per_seed(tmp_path):
    first = invoke("preview", "-o", "a.png", cwd=tmp_path)
    assert first.exit_code == 0, first.output
    paths = sorted(tmp_path.rglob("a.png"))
    assert len(paths) == 1
    image = cv2.imread(str(paths[0]))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 800
    again = invoke("preview", "-o", str(tmp_path / "b.png"))
    other = invoke("preview", "--seed", "1", "-o", str(tmp_path / "c.png"))
    assert again.exit_code == other.exit_code == 0
    assert paths[0].read_bytes() == (tmp_path / "b.png").read_bytes()
    assert paths[0].read_bytes() != (tmp_path / "c.png").read_bytes()


def test_preview_of_images_and_a_dataset_with_stages_and_standardize(tmp_path):
    photo = augkit.sample_data_dir() / "photos" / "coffee.jpg"
    spec = tmp_path / "aug.yaml"
    spec.write_text("seed: 3\nsteps:\n  - crop: {size: 0.5}\n  - rotate: {limit: 20, p: 1}\n  - standardize: {mean: 0.5, std: 0.25}\n")
    out = tmp_path / "stages.png"
    result = invoke("preview", str(photo), str(DIGITS), "--rows", "2", "-p", str(spec), "--stages", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "3 images x stages" in result.output
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.std() > 10  # not a blank page
    one = invoke("preview", str(photo), "-p", str(spec), "--stages", "-o", str(tmp_path / "one.png"))
    assert "(1 image x stages)" in one.output, one.output
    one = invoke("preview", str(photo), "-p", str(spec), "-n", "1", "-o", str(tmp_path / "one.png"))
    assert "(1 image x 1 variant)" in one.output, one.output


def test_preview_maps_standardized_tiles_back_to_the_original_pixels():
    from augkit.preview import to_viewable

    pipeline = augkit.load_pipeline("standardize(mean=[0.2, 0.4, 0.6], std=[0.1, 0.2, 0.3])")
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    restored = to_viewable(pipeline(image, index=0), pipeline.transforms[-1])
    np.testing.assert_allclose(restored.astype(int), image.astype(int), atol=1)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["preview", "-p", "rotat(limit=3)"], ["unknown step 'rotat'", "did you mean 'rotate'"]),
        (["preview", "-p", "rotate(p=2)"], ["'p' is a probability in [0, 1]"]),
        (["preview", "-p", "missing.yaml"], ["pipeline file not found: missing.yaml"]),
        (["preview", "nothing-here.png"], ["nothing-here.png"]),
        (["preview", "-o", "."], ["-o .: is a folder"]),
    ],
)
def test_preview_user_mistakes_are_one_line_exit_2(tmp_path, args, fragments):
    assert_user_error(invoke(*args, cwd=tmp_path), *fragments)


def test_preview_of_a_broken_image_names_it(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely truncated")
    assert_user_error(invoke("preview", str(bad), "-o", str(tmp_path / "x.png")), "bad.jpg")


def test_preview_passes_over_unreadable_files_of_a_dataset_as_every_command_does(tmp_path, write_png):
    folder = tmp_path / "flat"
    for i in range(3):
        write_png(folder / f"ok{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    (folder / "loop1.png").symlink_to("loop2.png")
    (folder / "loop2.png").symlink_to("loop1.png")
    os.mkfifo(folder / "fifo.png")
    result = CliRunner().invoke(cli, ["preview", str(folder), "--rows", "6", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "(3 images" in result.stdout
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("warning: passed over 3 unreadable file(s)")
    # Named directly, a FIFO is refused for what it is (it was "a single image; pass its folder").
    assert_user_error(invoke("preview", str(folder / "fifo.png"), "-o", str(tmp_path / "y.png")), "not a regular file (FIFO)")


def test_a_variant_much_larger_than_its_source_does_not_blow_up_the_sheet(tmp_path, write_png):
    # The row's zoom came from its source alone: a 32 x 32 source (zoom x5) with a 4000 x 300
    # variant made a 20000 x 1500 tile (Resize(32767, 2730) took 23.7 GB).
    import cv2

    source = write_png(tmp_path / "small.png", np.full((32, 32, 3), 90, np.uint8))
    out = tmp_path / "sheet.png"
    result = invoke("preview", str(source), "-p", "Resize(height=4000, width=300, p=1)", "-n", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    height, width = cv2.imread(str(out)).shape[:2]
    assert height < 600 and width < 600


def test_preview_writes_png_only(tmp_path):
    assert_user_error(invoke("preview", "-o", str(tmp_path / "sheet.jpg")), "the contact sheet is a PNG; name it .png")


def test_the_readme_crop_example_draws_its_24px_crops_enlarged_with_whole_pixels(tmp_path):
    from augkit.preview import build_rows, collect_sources

    spec, photos = "crop(size=24, padding=4); rotate(limit=15); hflip", augkit.sample_data_dir() / "photos"
    out = tmp_path / "sheet.png"
    result = invoke("preview", "-p", spec, str(photos / "chelsea.jpg"), str(photos / "coffee.jpg"), "-o", str(out))
    assert result.exit_code == 0, result.output
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    rows = build_rows(augkit.load_pipeline(spec), collect_sources([photos / "chelsea.jpg"], rows=1, seed=0), n=6, stages=False)
    for tile in rows[0][1:]:  # every variant of the first photo, 7 times its 24 px, each pixel a 7x7 block
        assert tile.image.shape[:2] == (24, 24)
        enlarged = np.repeat(np.repeat(tile.image, 7, axis=0), 7, axis=1)
        _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(sheet, enlarged, cv2.TM_SQDIFF))
        np.testing.assert_array_equal(sheet[y : y + 168, x : x + 168], enlarged)


# ----------------------------------------------------------------------------- steps


def test_steps_lists_augkit_steps_and_describes_one():
    listing = invoke("steps")
    assert listing.exit_code == 0 and "crop" in listing.output and "standardize" in listing.output
    assert "`augkit steps NAME` shows the parameters of one" in listing.output
    assert "RandomGamma" in invoke("steps", "--all").output
    assert_user_error(invoke("steps", "crp"), "did you mean 'crop'", "`augkit steps --all` lists them all")


def test_steps_plan_shows_what_merges_and_what_runs_as_it_is(tmp_path):
    spec = "crop(size=32, padding=4); rotate; brightness; contrast; hflip; GaussianBlur; standardize(mean=0.5, std=0.25)"
    result = subprocess.run([sys.executable, "-m", "augkit", "steps", "--plan", spec], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("compiled plan of 7 steps, in the order its passes run")
    groups = [line.split()[1:3] for line in lines[1:] if line[2:3].isdigit()]
    assert groups == [["warp", "crop,"], ["table", "brightness"], ["flip", "hflip"], ["table", "contrast"],
                      ["as", "is"], ["normalise", "standardize"]]
    assert "flips, run before the table that follows" in result.stdout
    listing = json.loads(invoke("steps", "--plan", spec, "--json").output)
    assert listing["compiled"] is True and listing["groups"][0] == {"runs": "warp", "steps": ["crop", "rotate"]}
    (tmp_path / "p.yaml").write_text("compile: false\nsteps: [hflip, rotate]\n")
    off = invoke("steps", "--plan", str(tmp_path / "p.yaml"))
    assert off.exit_code == 0 and off.output.startswith("compile: false: this pipeline runs its 2 steps one by one")
    (tmp_path / "empty.yaml").write_text("steps: []\n")
    empty = invoke("steps", "--plan", str(tmp_path / "empty.yaml"))
    assert empty.exit_code == 0 and "(no steps: the image comes back as it is)" in empty.output
    assert_user_error(invoke("steps", "--plan", "hflip; nosuch"), "steps[1]: unknown step 'nosuch'")
    assert_user_error(invoke("steps", "crop", "--plan", "hflip"), "give a step NAME or --plan SPEC, not both")


def _parameter_lines(output: str) -> dict[str, list[str]]:
    """``augkit steps NAME``'s output: parameter -> its lines (the head, then the meaning)."""
    blocks: dict[str, list[str]] = {}
    lines = output.splitlines()
    for line in lines[lines.index("") + 1 :]:  # the summary (any number of lines), a blank line, the parameters
        if line.startswith("  ") and not line.startswith("   "):
            name, _, rest = line.strip().partition(" ")
            blocks[name] = [rest.strip()]
        else:
            blocks[list(blocks)[-1]].append(line.strip())
    return blocks


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    """``augkit steps`` wraps to the terminal: the tests read it at 100 columns (its default without one)."""
    monkeypatch.setenv("COLUMNS", "100")


def test_steps_wraps_to_a_narrow_terminal_without_mixing_the_summary_into_the_parameters(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    blocks = _parameter_lines(invoke("steps", "crop").output)
    assert list(blocks) == ["size", "mode", "padding", "scale", "ratio", "border", "fill", "fill_mask", "p"]


def test_steps_crop_shows_each_parameters_type_choices_default_and_meaning():
    # The issue: `augkit steps crop` listed neither mode's nor border's choices, nor any meaning.
    result = invoke("steps", "crop")
    assert result.exit_code == 0, result.output
    blocks = _parameter_lines(result.output)
    assert list(blocks) == ["size", "mode", "padding", "scale", "ratio", "border", "fill", "fill_mask", "p"]
    assert blocks["mode"][0] == "one of random, center, random_resized; default random"
    assert blocks["border"][0] == "one of constant, reflect, replicate; default constant"
    assert blocks["padding"][0] == "int; >= 0; default 0"
    assert blocks["p"][0] == "float; in [0, 1]; default 1"
    assert blocks["size"][0].startswith("int | [int, int] | float;") and blocks["size"][0].endswith("default 0.875")
    assert " ".join(blocks["border"][1:]) == 'how padding is filled: "constant" (fill), "reflect" or "replicate"'
    assert all(len(lines) >= 2 for lines in blocks.values()), blocks  # every parameter says what it means


def test_steps_describes_an_albumentations_transform_from_its_schema_and_docstring():
    blocks = _parameter_lines(invoke("steps", "GaussNoise").output)
    assert blocks["std_range"][0] == "[float, float]; each in [0, 1]; default [0.2, 0.44]"  # check_range_bounds(0, 1)
    assert blocks["noise_scale_factor"][0] == "float; in (0, 1]; default 1"  # Field(gt=0, le=1)
    assert " ".join(blocks["per_channel"][1:]).startswith("if True, noise will be sampled for each channel independently")
    resize = _parameter_lines(invoke("steps", "Resize").output)
    assert resize["height"][0] == "int; in [1, 32767]; required"  # augkit's own bound on output sizes
    assert "1 (INTER_LINEAR)" in resize["interpolation"][0] and "6 (INTER_NEAREST_EXACT)" in " ".join(resize["interpolation"])
    assert _parameter_lines(invoke("steps", "MedianBlur").output)["blur_limit"][0].startswith("[int, int] | int; each <= 255")


def test_steps_json_is_the_same_description_for_programs():
    data = json.loads(invoke("steps", "crop", "--json").output)
    mode = next(p for p in data["parameters"] if p["name"] == "mode")
    assert mode == {"name": "mode", "type": "", "choices": ["random", "center", "random_resized"], "bounds": "",
                    "low": None, "high": None, "meaning": mode["meaning"], "required": False, "default": "random"}  # fmt: skip
    scale = next(p for p in data["parameters"] if p["name"] == "scale")
    assert (scale["bounds"], scale["low"], scale["high"]) == ("each in (0, 1]", 0, 1)
    assert mode["meaning"].startswith('"random" (a window at a random position)')


def test_stats_mean_image_feeds_alexnet_style_mean_subtraction(tmp_path):
    result = invoke("stats", "--mean-image", "-o", str(tmp_path / "digits.json"), "--workers", "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "digits.mean_image.npy").is_file()
    pipeline = augkit.load_pipeline("subtract_mean(stats=digits.json, mode=image)", base_dir=tmp_path)
    dataset = augkit.open_dataset(DIGITS)
    centred = np.stack([pipeline(dataset.read(i), index=i) for i in range(len(dataset))]).astype(np.float64)
    np.testing.assert_allclose(centred.mean(axis=0), 0, atol=1e-6)  # every pixel position centred


def test_stats_mean_image_of_differently_sized_images_says_to_resize(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((5, 4, 3), np.uint8))
    assert_user_error(invoke("stats", str(tmp_path), "--mean-image", "--workers", "1"), "same size")
