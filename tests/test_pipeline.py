"""Pipeline specs: parsing, validation, round trips, reproducibility and replay."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import yaml

import augkit
from augkit.errors import SpecError
from augkit.pipeline._albumentations import A
from augkit.pipeline.spec import format_inline

IMAGE = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)

ISSUE_SPEC = """\
seed: 0
steps:
  - crop: {size: 24, padding: 2}
  - rotate: {limit: 15, p: 0.5}
  - brightness: {limit: 0.2, p: 0.5}
  - hflip: {p: 0.5}
  - RandomGamma: {p: 0.3}
  - standardize: {stats: stats.json}
"""


@pytest.fixture
def spec_dir(tmp_path):
    """A folder holding the issue's example spec and the stats file it names."""
    stats = augkit.ChannelStats()
    stats.update(IMAGE)
    stats.save(tmp_path / "stats.json")
    (tmp_path / "aug.yaml").write_text(ISSUE_SPEC)
    return tmp_path


def test_yaml_spec_round_trips_exactly_seed_included(spec_dir):
    pipeline = augkit.load_pipeline(spec_dir / "aug.yaml")
    assert pipeline.to_spec() == yaml.safe_load(ISSUE_SPEC)
    again = augkit.load_pipeline(pipeline.to_spec() | {"seed": 5}, base_dir=spec_dir)
    assert again.to_spec()["seed"] == 5
    assert augkit.load_pipeline(pipeline).to_spec() == pipeline.to_spec()  # keeps its base folder


def test_stats_paths_resolve_against_the_spec_files_folder(spec_dir, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    out = augkit.load_pipeline(spec_dir / "aug.yaml")(IMAGE, index=0)
    assert out.dtype == np.float32 and out.shape == (24, 24, 3)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_saved_spec_loads_back_to_the_same_pipeline(spec_dir, suffix):
    pipeline = augkit.load_pipeline(spec_dir / "aug.yaml", seed=3)
    path = pipeline.save(spec_dir / f"copy{suffix}")
    loaded = augkit.load_pipeline(path)
    assert loaded.to_spec() == pipeline.to_spec()
    np.testing.assert_array_equal(loaded(IMAGE, index=4, epoch=2), pipeline(IMAGE, index=4, epoch=2))


def test_inline_form_builds_the_same_pipeline_as_yaml():
    inline = "crop(size=24, padding=2); rotate(limit=15, p=0.5); hflip(p=0.5); RandomGamma(p=0.3); Rotate(limit=[-10, 10])"
    from_inline = augkit.load_pipeline(inline)
    from_yaml = augkit.load_pipeline(
        {"steps": [{"crop": {"size": 24, "padding": 2}}, {"rotate": {"limit": 15, "p": 0.5}}, {"hflip": {"p": 0.5}},
                   {"RandomGamma": {"p": 0.3}}, {"Rotate": {"limit": [-10, 10]}}]}
    )
    assert from_inline.to_spec() == from_yaml.to_spec()
    for index in range(5):
        np.testing.assert_array_equal(from_inline(IMAGE, index=index), from_yaml(IMAGE, index=index))


def test_format_inline_parses_back_to_the_same_spec_nested_steps_included():
    spec = {"seed": 0, "steps": [{"crop": {"size": [24, 20], "mode": "center"}}, {"hflip": {}},
                                 {"OneOf": {"p": 0.5, "transforms": [{"Blur": {"blur_limit": [3, 5]}}, {"GaussNoise": {}}]}}]}
    assert augkit.load_pipeline(format_inline(spec)).to_spec() == spec


def test_bare_step_names_and_a_bare_list_are_accepted():
    assert augkit.load_pipeline(["hflip", {"vflip": None}]).to_spec() == {"seed": 0, "steps": [{"hflip": {}}, {"vflip": {}}]}


def test_a_file_written_by_albumentations_save_loads_and_augments_identically(tmp_path):
    ours = augkit.load_pipeline("crop(size=24, padding=2); rotate(limit=15); hflip; RandomGamma(p=0.3); OneOf(transforms=[Blur, GaussNoise], p=0.5)")
    A.save(ours.compose, str(tmp_path / "albu.json"))
    A.save(ours.compose, str(tmp_path / "albu.yaml"), data_format="yaml")
    for name in ("albu.json", "albu.yaml"):
        loaded = augkit.load_pipeline(tmp_path / name)
        assert [next(iter(s)) for s in loaded.to_spec()["steps"]] == ["crop", "rotate", "HorizontalFlip", "RandomGamma", "OneOf"]
        for index in range(8):
            np.testing.assert_array_equal(loaded(IMAGE, index=index), ours(IMAGE, index=index))


def test_a_file_saved_before_the_package_re_layout_still_loads(tmp_path):
    # albumentations.save names augkit's classes by module path; before augkit/pipeline/ they
    # lived in augkit.transforms, and files written then must keep loading.
    crop = {"__class_fullname__": "augkit.transforms.Crop", "p": 1.0, "size": 24, "mode": "random", "padding": 2}
    rotate = {"__class_fullname__": "augkit.transforms.Rotate", "p": 0.5, "limit": 15.0, "border": "reflect"}
    brightness = {"__class_fullname__": "augkit.transforms.Brightness", "p": 0.5, "limit": 0.2}
    one_of = {"__class_fullname__": "OneOf", "p": 0.5, "transforms": [brightness, {"__class_fullname__": "Blur", "p": 0.5}]}
    saved = {"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose", "p": 1.0, "seed": 3,
                                                   "transforms": [crop, rotate, one_of]}}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(saved))
    loaded = augkit.load_pipeline(tmp_path / "old.json")
    assert [next(iter(s)) for s in loaded.to_spec()["steps"]] == ["crop", "rotate", "OneOf"]
    assert next(iter(loaded.to_spec()["steps"][2]["OneOf"]["transforms"][0])) == "brightness"
    inline = augkit.load_pipeline("crop(size=24, padding=2); rotate(limit=15, p=0.5); OneOf(transforms=[brightness(p=0.5), Blur(p=0.5)], p=0.5)", seed=3)
    for index in range(8):
        np.testing.assert_array_equal(loaded(IMAGE, index=index), inline(IMAGE, index=index))


def test_a_plain_albumentations_pipeline_file_loads_with_a_warning_that_it_has_no_seed(tmp_path):
    A.save(A.Compose([A.RandomCrop(16, 16), A.HorizontalFlip(p=0.5), A.Normalize()]), str(tmp_path / "plain.json"))
    with pytest.warns(augkit.AugkitWarning, match=r"plain.json: this albumentations file carries no seed; augkit uses seed 0"):
        pipeline = augkit.load_pipeline(tmp_path / "plain.json")
    out = pipeline(IMAGE, index=0)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32


def test_albumentations_save_keeps_the_seed_for_augkit_and_for_plain_albumentations(tmp_path):
    # The issue: a pipeline written with albumentations.save reloaded with seed 0 instead of 5.
    ours = augkit.load_pipeline("rotate(limit=30, p=1); brightness(p=1)", seed=5)
    A.save(ours.compose, str(tmp_path / "albu.yaml"), data_format="yaml")
    loaded = augkit.load_pipeline(tmp_path / "albu.yaml")
    assert loaded.seed == 5
    np.testing.assert_array_equal(loaded(IMAGE, index=3), ours(IMAGE, index=3))
    plain = A.load(str(tmp_path / "albu.yaml"), data_format="yaml")
    assert type(plain) is A.Compose and plain.seed == 5


def test_a_pipeline_saved_into_another_folder_loads_from_there(spec_dir, tmp_path_factory, monkeypatch):
    # The issue: save() kept `stats: stats.json` relative to the old folder, so the copy did not load.
    pipeline = augkit.load_pipeline(spec_dir / "aug.yaml", seed=4)
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "deep" / "er"
    elsewhere.mkdir(parents=True)
    saved = pipeline.save(elsewhere / "copy.yaml")
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # nothing may depend on where we stand
    loaded = augkit.load_pipeline(saved)
    assert loaded.seed == 4
    (stats_path,) = [s["standardize"]["stats"] for s in yaml.safe_load(saved.read_text())["steps"] if "standardize" in s]
    assert not stats_path.startswith("/") and (elsewhere / stats_path).resolve() == (spec_dir / "stats.json").resolve()
    np.testing.assert_array_equal(loaded(IMAGE, index=2, epoch=1), pipeline(IMAGE, index=2, epoch=1))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rotat(limit=10)", r"unknown step 'rotat' \(did you mean 'rotate'"),
        ("randomgamma", r"did you mean .*'RandomGamma'"),
        ("rotate(limt=10)", r"step 'rotate': unknown parameter 'limt' \(did you mean 'limit'\?\); rotate accepts: limit, border, fill, fill_mask, rotate_method, p"),
        ("rotate(p=1.5)", r"step 'rotate': parameter 'p' is a probability in \[0, 1\], got 1.5"),
        ("hflip(p=-0.1)", r"'p' is a probability in \[0, 1\]"),
        ("RandomGamma(p=yes)", r"'RandomGamma': parameter 'p' got True, expected float"),
        ("rotate(limit=abc)", r"step 'rotate': parameter 'limit' got 'abc', expected float \| tuple\[float, float\]"),
        ("rotate(border=mirror)", r"parameter 'border' got 'mirror'"),
        ("RandomGamma(gamma_limit=[1, 2, 3])", r"step 'RandomGamma': parameter 'gamma_limit' got \[1, 2, 3\]"),
        ("crop(size=0)", r"step 'crop': size must be pixels from 1 to 32767 \(an int or \[height, width\]\) or a fraction"),
        ("contrast(limit=5)", r"step 'contrast': limit must lie within \[-1, 1\]"),
        ("standardize(mean=[0.5])", r"give either stats .* or both mean and std"),
        ("OneOf(transforms=[rotat])", r"unknown step 'rotat'"),
        ("FDA", r"'FDA' cannot be used in an augkit pipeline: it needs extra inputs"),
        ("Lambda", r"cannot carry"),
        ("crop(size=24", r"missing its closing '\)'"),
        ("crop(24)", r"'24' is not key=value"),
        ("", r"inline pipeline is empty"),
        ("missing.yaml", r"pipeline file not found: missing.yaml"),
    ],
)
def test_invalid_specs_fail_before_running_with_one_line_naming_step_and_key(spec, message):
    with pytest.raises(SpecError, match=message) as info:
        augkit.load_pipeline(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": [{"hflip": {}}], "sed": 1}, r"unknown key\(s\) sed"),
        ({"seed": -1, "steps": []}, r"'seed' must be an integer in \[0, 2\*\*64\)"),
        ({"seed": 0}, r"'steps' must be a list"),
        ({"steps": [{"hflip": {}, "vflip": {}}]}, r"a step is 'name' or \{name: \{params\}\}"),
        ({"steps": [{"hflip": [0.5]}]}, r"parameters must be a mapping"),
        ({"steps": [{"OneOf": {"p": 0.5}}]}, r"needs 'transforms'"),
    ],
)
def test_malformed_spec_structure_is_explained(data, message):
    with pytest.raises(SpecError, match=message):
        augkit.load_pipeline(data)


def test_broken_yaml_and_json_files_are_explained(tmp_path):
    (tmp_path / "bad.yaml").write_text("steps: [crop: {size: 24}\n")
    (tmp_path / "bad.json").write_text("{steps: }")
    with pytest.raises(SpecError, match=r"bad.yaml:1:8: not valid YAML"):
        augkit.load_pipeline(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match=r"bad.json:1:2: not valid JSON"):
        augkit.load_pipeline(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps:\n  - rotat: {limit: 10}\n", "steps[0]: unknown step 'rotat' (did you mean 'rotate'"),
        ("steps:\n  - hflip\n  - rotate: {limit: 1000000}\n", "steps[1]: step 'rotate': parameter 'limit' got 1000000"),
        ("steps:\n  - crop: {size: 24, mode: middle}\n", "steps[0]: "),
        ("seed: -1\nsteps: [hflip]\n", "'seed' must be an integer"),
    ],
)
def test_a_mistake_inside_a_pipeline_file_names_the_file(tmp_path, text, message):
    # Not only syntax errors: a user with several pipeline files must see which one is wrong.
    path = tmp_path / "aug.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        augkit.load_pipeline(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)
    with pytest.raises(SpecError) as error:
        augkit.load_pipeline(str(path))
    assert str(error.value).startswith(f"{path}: ")


def test_missing_stats_file_is_a_user_error(tmp_path):
    with pytest.raises(augkit.AugkitError, match="nope.json"):
        augkit.load_pipeline({"steps": [{"standardize": {"stats": str(tmp_path / "nope.json")}}]})


# ----------------------------------------------------------------------------- seeding and replay

AUGMENT = "crop(size=24, padding=2); rotate(limit=30); brightness; contrast; hflip; RandomGamma(p=0.5); OneOf(transforms=[Blur, GaussNoise], p=0.5)"


def test_same_seed_epoch_index_gives_the_same_image_across_pipeline_objects():
    a, b = augkit.load_pipeline(AUGMENT), augkit.load_pipeline(AUGMENT)
    for index in range(10):
        np.testing.assert_array_equal(a(IMAGE, index=index, epoch=1), b(IMAGE, index=index, epoch=1))


def test_the_result_does_not_depend_on_the_order_samples_are_drawn():
    pipeline = augkit.load_pipeline(AUGMENT)
    forward = [pipeline(IMAGE, index=i) for i in range(6)]
    backward = [pipeline(IMAGE, index=i) for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x, y)


def test_indices_epochs_and_seeds_each_change_the_draws():
    pipeline = augkit.load_pipeline(AUGMENT)
    outputs = {pipeline(IMAGE, index=i, epoch=0).tobytes() for i in range(20)}
    assert len(outputs) == 20
    assert not np.array_equal(pipeline(IMAGE, index=0, epoch=0), pipeline(IMAGE, index=0, epoch=1))
    other_seed = augkit.load_pipeline(AUGMENT, seed=1)
    assert not np.array_equal(pipeline(IMAGE, index=0), other_seed(IMAGE, index=0))


def test_steps_draw_independent_values_not_one_shared_number():
    """albumentations seeds every transform of a Compose with the same seed, so two steps with
    the same range draw the same value; augkit's per-sample stream does not."""
    pipeline = augkit.load_pipeline("brightness(limit=0.5, p=1); contrast(limit=0.5, p=1)")
    pairs = []
    for index in range(20):
        _, applied = pipeline.replay(IMAGE, index=index)
        pairs.append((applied[0].params["delta"], applied[1].params["delta"]))
    assert all(abs(d - c) > 1e-9 for d, c in pairs)


def test_calls_without_an_index_are_numbered_reproducibly():
    a, b = augkit.load_pipeline(AUGMENT), augkit.load_pipeline(AUGMENT)
    first = [a(IMAGE) for _ in range(3)]
    np.testing.assert_array_equal(first[2], b(IMAGE, index=2))
    assert not np.array_equal(first[0], first[1])


def test_replay_reports_the_parameters_that_produced_the_image():
    pipeline = augkit.load_pipeline("crop(size=24, padding=2); rotate(limit=30, p=1); brightness(p=1); hflip(p=0); RandomGamma(p=1)")
    out, applied = pipeline.replay(IMAGE, index=3, epoch=1)
    np.testing.assert_array_equal(out, pipeline(IMAGE, index=3, epoch=1))
    assert [a.name for a in applied] == ["crop", "rotate", "brightness", "RandomGamma"]  # hflip(p=0) never applies
    angle = applied[1].params["angle"]
    assert -30 <= angle <= 30 and applied[1].caption == f"rot {angle:+.1f}°"
    assert applied[2].caption.startswith("bright ") and applied[3].caption.startswith("RandomGamma gamma ")
    y, x, h, w = applied[0].params["window"]
    assert applied[0].caption == f"crop ({y},{x})" and (h, w) == (24, 24)


def test_replay_forgets_what_a_oneof_did_not_pick_this_time():
    pipeline = augkit.load_pipeline("OneOf(transforms=[Blur(p=1), GaussNoise(p=1)], p=1)")
    picks = [[a.name for a in pipeline.replay(IMAGE, index=i)[1]] for i in range(20)]
    assert all(len(p) == 1 for p in picks) and {p[0] for p in picks} == {"Blur", "GaussNoise"}


def test_stages_end_in_the_pipelines_output():
    pipeline = augkit.load_pipeline(AUGMENT + "; standardize(mean=0.5, std=0.25)")
    for index in range(8):
        stages = pipeline.stages(IMAGE, index=index)
        np.testing.assert_array_equal(stages[-1][1], pipeline(IMAGE, index=index))
        assert stages[-1][0].name == "standardize"


def test_a_pipeline_pickles_for_worker_processes_and_keeps_its_draws():
    pipeline = augkit.load_pipeline(AUGMENT)
    clone = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(clone(IMAGE, index=5, epoch=3), pipeline(IMAGE, index=5, epoch=3))


def test_to_spec_returns_a_copy_the_caller_may_change():
    pipeline = augkit.load_pipeline("crop(size=24)")
    spec = pipeline.to_spec()
    spec["steps"][0]["crop"]["size"] = 8
    assert pipeline.to_spec()["steps"][0]["crop"]["size"] == 24
    assert json.loads(json.dumps(pipeline.to_spec())) == pipeline.to_spec()


@pytest.mark.parametrize("seed", [2**64, -1, 5.0, True])
def test_seeds_outside_64_bits_are_refused_and_numpy_seeds_accepted(seed):
    # seed 5 and 5 + 2**64 gave the same images.
    with pytest.raises(SpecError, match=r"'seed' must be an integer in \[0, 2\*\*64\)"):
        augkit.load_pipeline("hflip", seed=seed)
    assert augkit.load_pipeline("hflip", seed=np.int64(3)).seed == 3


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("steps: [{rotate: {1: 10}}]", "a.yaml", r"pipeline spec steps\[0\] \(rotate\): parameter names are words, got 1"),
        ('{"transform": {"__class_fullname__": "Compose", "transforms": "abc"}}', "b.json", r"'transforms' must be a list of transforms, got 'abc'"),
        ('{"transform": {"__class_fullname__": "Compose", "transforms": ["a"]}}', "c.json", r"a transform must be a mapping with '__class_fullname__', got 'a'"),
    ],
)
def test_spec_files_of_odd_structure_are_one_line(tmp_path, text, name, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError, match=message):
        augkit.load_pipeline(tmp_path / name)


@pytest.mark.parametrize("compile_", [True, False], ids=["compiled", "step-by-step"])
def test_steps_that_grow_an_image_past_the_pixel_limit_are_one_line(compile_):
    # Pad: refused before it allocates (24032 x 24032 took 8 s and 1.7 GB).
    pipeline = augkit.load_pipeline({"steps": [{"hflip": {}}, {"Pad": {"padding": 12000}}], "compile": compile_})
    with pytest.raises(augkit.AugkitError, match=r"step 'Pad' would make a 24032 x 24032 image \(577,537,024 pixels\)"):
        pipeline(np.zeros((32, 32, 3), np.uint8), index=0)
    # A growth only the output shows: measured on each step's output.
    grow = augkit.load_pipeline({"steps": [{"Affine": {"scale": 16, "keep_ratio": True, "fit_output": True, "p": 1}}],
                                 "compile": compile_})
    with pytest.raises(augkit.AugkitError, match=r"step 'Affine' made a 9602 x 9602 image \(92,198,404 pixels\)"):
        grow(np.zeros((600, 600), np.uint8), index=0)
    with pytest.raises(augkit.AugkitError, match=r"the pipeline made a 24032 x 24032 image"):
        augkit.load_pipeline("Pad(padding=12000)").compose(image=np.zeros((32, 32, 3), np.uint8))


@pytest.mark.parametrize("spec, fragment", [
    ("RandomScale(scale_limit=[600, 600], p=1)", "parameter 'scale_limit' got [600, 600]; its numbers must be finite and within +-16"),
    ("Affine(scale=500, fit_output=True)", "parameter 'scale' got 500; its numbers must be finite and within +-16"),
    ("CropAndPad(px=60000)", "parameter 'px' got 60000; its numbers must be finite and within +-4096"),
    ("CropAndPad(percent=600)", "parameter 'percent' got 600; its numbers must be finite and within +-16"),
])
def test_growth_factors_of_albumentations_steps_are_bounded_when_built(spec, fragment):
    with pytest.raises(augkit.SpecError, match=re.escape(fragment)):
        augkit.load_pipeline(spec)


@pytest.mark.parametrize("step", ["standardize", "subtract_mean"])
@pytest.mark.parametrize("compile_", [True, False], ids=["compiled", "step-by-step"])
def test_a_stats_file_of_other_channels_than_the_image_is_refused_not_broadcast(tmp_path, step, compile_):
    # A gray stats file (1 channel) on colour images standardised every channel with the gray
    # statistics, silently; numbers given by hand (one value for every channel) still broadcast.
    gray = augkit.ChannelStats(1).update(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8))
    gray.save(tmp_path / "gray.json")
    pipeline = augkit.load_pipeline({"steps": [{step: {"stats": "gray.json"}}], "compile": compile_}, base_dir=tmp_path)
    with pytest.raises(augkit.AugkitError, match=r"gray.json holds statistics of 1 channel\(s\) but the image has 3"):
        pipeline(np.zeros((8, 8, 3), np.uint8), index=0)
    assert pipeline(np.zeros((8, 8, 1), np.uint8), index=0).shape == (8, 8, 1)
    by_hand = augkit.load_pipeline({"steps": [{step: {"mean": 0.5, **({"std": 0.25} if step == "standardize" else {})}}]})
    assert by_hand(np.zeros((8, 8, 3), np.uint8), index=0).shape == (8, 8, 3)
