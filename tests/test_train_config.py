"""TrainConfig's values: every float finite and in range, integers and seeds bounded, and widths
checked against what the machine can hold, all when the config is made (before any run)."""

from __future__ import annotations

import math
import re
import types
import typing

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import augkit.train.config as config_module
from augkit.errors import AugkitError
from augkit.train.config import FIELDS, SEED_LIMIT, TrainConfig, parse_assignment
from augkit.train.models import count_parameters, create_model


def _is_float_field(hint: object) -> bool:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return float in options


FLOAT_FIELDS = sorted(name for name, hint in FIELDS.items() if _is_float_field(hint))


def test_the_float_fields_are_the_ones_the_issue_lists():
    # If a float field is added, it is checked below without anyone listing it.
    assert {"lr", "weight_decay", "init_std", "momentum", "clip_grad", "warmup_epochs", "label_smoothing",
            "val_split", "dropout", "l1", "leaky_slope"} <= set(FLOAT_FIELDS)  # fmt: skip


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_field_refuses_nan_and_infinities(name, value):
    with pytest.raises(AugkitError, match=rf"^{name} must be .*, got {value:g}"):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_every_float_field_refuses_yaml_nan_from_a_file_and_from_set(tmp_path, name):
    path = tmp_path / "config.yaml"
    path.write_text(f"{name}: .nan\n")
    with pytest.raises(AugkitError, match=rf"^{name} must be .*, got nan"):
        TrainConfig.load(path)
    with pytest.raises(AugkitError, match=rf"^{name} must be .*, got inf"):
        TrainConfig().replace(dict([parse_assignment(f"{name}=.inf")]))


@given(
    low=st.floats(allow_nan=False),
    high=st.floats(allow_nan=False),
    low_open=st.booleans(),
    high_open=st.booleans(),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_no_range_check_lets_nan_or_an_infinity_through(low, high, low_open, high_open, value):
    with pytest.raises(AugkitError):
        config_module.check_range("x", value, low, high, low_open=low_open, high_open=high_open)


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [1e308, -1e308])
def test_every_float_field_refuses_a_finite_value_that_could_only_overflow_later(name, value):
    # leaky_slope=-1e308 used to pass, then overflow squaring itself for its init gain.
    with pytest.raises(AugkitError, match=rf"^{name}\b.* must be"):
        TrainConfig(**{name: value})


@pytest.mark.parametrize(
    ("name", "highest", "past", "interval"),
    [
        ("leaky_slope", 1.0, 1.5, "[-1, 1]"),
        ("leaky_slope", -1.0, -1.5, "[-1, 1]"),
        ("init_std", 10.0, 10.5, "[0, 10]"),
        ("weight_decay", 1.0, 2.0, "[0, 1]"),
        ("l1", 1.0, 2.0, "[0, 1]"),
        ("lr", config_module.FLOAT32_MAX, 3.5e38, "(0, 3.40282e+38]"),
        ("clip_grad", config_module.FLOAT32_MAX, 3.5e38, "(0, 3.40282e+38]"),
    ],
)
def test_float_bounds_take_the_bound_and_name_it_past_it(name, highest, past, interval):
    assert getattr(TrainConfig(**{name: highest}), name) == highest
    with pytest.raises(AugkitError, match=re.escape(f"{name} must be in {interval}, got {past:g} (")):
        TrainConfig(**{name: past})
    assert float(np.float32(config_module.FLOAT32_MAX)) == config_module.FLOAT32_MAX  # float32's largest, exactly


def test_a_number_too_large_for_a_float_is_one_line_not_an_overflow():
    with pytest.raises(AugkitError, match=r"config: lr must be float, got 1000000000"):
        TrainConfig.from_dict({"lr": 10**400})


# ----------------------------------------------------------------------------- seeds and integers


def test_seeds_are_in_numpys_range_which_torch_takes_too():
    highest = SEED_LIMIT - 1
    np.random.seed(highest)  # the narrowest seeder a run's seed may reach
    torch.manual_seed(highest)
    np.random.default_rng([highest, 0])
    assert TrainConfig(seed=highest).seed == highest
    with pytest.raises(ValueError):
        np.random.seed(SEED_LIMIT)
    for seed in (SEED_LIMIT, -1, 10**5000):
        with pytest.raises(AugkitError, match=r"^seed must be in \[0, 4294967296\), got .*numpy's seed range"):
            TrainConfig(seed=seed)


@pytest.mark.parametrize(
    ("name", "value", "interval"),
    [
        ("epochs", 0, "[1, 1000000]"),
        ("epochs", 10**7, "[1, 1000000]"),
        ("batch_size", 1 << 21, "[1, 1048576]"),
        ("workers", 1000, "[0, 256]"),
        ("workers", -1, "[0, 256]"),
        ("watch_activations", 2**31, "[0, 2147483647]"),
        ("train_subset", 0, "[1, 2147483647]"),
        ("train_subset", 2**40, "[1, 2147483647]"),
        ("maxout_pieces", 17, "[1, 16]"),
    ],
)
def test_integer_fields_are_bounded(name, value, interval):
    with pytest.raises(AugkitError, match=re.escape(f"{name} must be in {interval}, got {value}")):
        TrainConfig(**{name: value})


def test_maxout_needs_two_pieces_when_it_is_the_activation():
    TrainConfig(maxout_pieces=1)
    with pytest.raises(AugkitError, match=re.escape("maxout_pieces must be in [2, 16], got 1")):
        TrainConfig(activation="maxout", maxout_pieces=1)


# ----------------------------------------------------------------------------- widths


def test_a_width_past_the_bound_is_refused_with_the_bound():
    with pytest.raises(AugkitError, match=re.escape("hidden must be 1 to 1000 widths, each in [1, 65536]")):
        TrainConfig(model="mlp", hidden=(10**9,))


def test_channels_of_a_million_are_refused_with_the_parameters_and_bytes_they_need():
    with pytest.raises(AugkitError) as caught:
        TrainConfig(channels=(10**6,))
    assert "channels (1000000,) gives the cnn at least 9e+12 parameters: 144,000 GB" in str(caught.value)


def test_layers_that_do_not_fit_in_memory_are_refused_before_anything_is_allocated(monkeypatch):
    monkeypatch.setattr(config_module, "physical_memory", lambda: 8 << 30)
    TrainConfig(model="mlp", hidden=(8192, 8192))  # 67M parameters: 1.1 GB to train
    with pytest.raises(AugkitError, match=re.escape(
        "hidden (16384, 16384, 16384, 16384) gives the mlp at least 8.05e+08 parameters: 12 GB with their gradients and "
        "Adam's moments (float32), more than this machine's 8.6 GB of memory"
    )):  # fmt: skip
        TrainConfig(model="mlp", hidden=(16384, 16384, 16384, 16384))
    # Only the model in use counts: the same hidden widths do not stop a cnn.
    TrainConfig(model="cnn", hidden=(16384, 16384, 16384, 16384))
    # Where the system does not say how much memory it has, the bound per width still holds.
    monkeypatch.setattr(config_module, "physical_memory", lambda: None)
    TrainConfig(model="mlp", hidden=(16384, 16384, 16384, 16384))


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "mlp", "hidden": (64, 32, 16)},
        {"model": "mlp", "hidden": (64, 32), "activation": "maxout", "maxout_pieces": 3},
        {"model": "cnn", "channels": (8, 16)},
        {"model": "cnn", "channels": (8, 16), "activation": "maxout"},
        {"model": "resnet", "channels": (8, 16, 32)},
        {"model": "resnet", "channels": (8, 8), "batchnorm": False},
    ],
)
def test_the_memory_estimate_is_a_lower_bound_of_the_real_models_size(changes):
    config = TrainConfig(**changes)
    model = create_model(config, (1, 16, 16), classes=2)
    assert 0 < config.fixed_parameters() <= count_parameters(model)


def test_too_many_layers_or_too_long_a_text_is_refused_so_that_config_yaml_reads_back():
    with pytest.raises(AugkitError, match=re.escape("hidden must be 1 to 1000 widths, each in [1, 65536]")):
        TrainConfig(model="mlp", hidden=(4,) * 1001)
    with pytest.raises(AugkitError, match=r"^augment is 4,097 characters long, more than 4,096"):
        TrainConfig(augment="x" * 4097)


# ----------------------------------------------------------------------------- texts and config.yaml


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("data", "odd/p\udcffp", "data 'odd/p\\xffp' is not valid UTF-8 (byte 0xff)"),  # os.fsdecode(b"odd/p\xffp")
        ("stats", "s\udce9.json", "stats 's\\xe9.json' is not valid UTF-8 (byte 0xe9)"),
        ("augment", "crop(size=8)\ud800", "augment 'crop(size=8)\\ud800' is not valid UTF-8 (a lone surrogate U+D800)"),
        ("device", "cpu\udc80", "device 'cpu\\x80' is not valid UTF-8 (byte 0x80)"),
    ],
)
def test_a_text_that_is_not_utf8_is_refused_with_its_bytes_escaped(field, value, shown):
    with pytest.raises(AugkitError) as caught:
        TrainConfig(**{field: value})
    assert str(caught.value).startswith(shown) and "rename it" in str(caught.value), caught.value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["data", "augment", "stats", "device"]), text=st.text(min_size=1, max_size=300))
def test_every_config_that_can_be_made_saves_a_config_yaml_that_loads_back_equal(tmp_path, field, text):
    """Any text at all (control characters, quotes, YAML syntax, lone surrogates): refused when
    the config is made, or written so that augkit's own reader gives the same config back."""
    try:
        config = TrainConfig(**{field: text})
    except AugkitError as error:
        assert "is not valid UTF-8" in str(error)
        return
    path = config.save(tmp_path / "config.yaml")
    assert TrainConfig.load(path) == config


# ----------------------------------------------------------------------------- lists of integers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512,512", (512, 512)),
        ("512 512", (512, 512)),  # once read as 512512
        ("512, 512", (512, 512)),
        (" 512 ,512 ", (512, 512)),
        ("[512, 512]", (512, 512)),  # as config.yaml writes it
        ("[512 512]", (512, 512)),
        ("256\t128", (256, 128)),
        ("512", (512,)),
    ],
)
def test_a_list_of_widths_reads_with_commas_or_spaces(text, expected):
    assert config_module.parse_int_list(text) == expected
    assert TrainConfig(model="mlp").replace({"hidden": text}, source="command line").hidden == expected
    if text != "[512 512]":  # --set reads YAML: a list of one item, the text "512 512", refused below
        assert TrainConfig().replace(dict([parse_assignment(f"channels={text}")])).channels == expected


def test_a_yaml_list_holds_one_width_per_item():
    with pytest.raises(AugkitError, match=re.escape("--set: channels must be a list of integers, separated by commas or "
                                                    "spaces (for example 512,512 or '512 512'), got ['512 512']")):  # fmt: skip
        TrainConfig().replace(dict([parse_assignment("channels=[512 512]")]))


@pytest.mark.parametrize("text", ["512x512", "512,,512", "512,", ",512", "", "  ", "512;512", "[512", "5.5", "0x200", "512 five"])
def test_a_list_that_cannot_be_read_is_refused_with_the_forms_it_takes(text):
    with pytest.raises(ValueError):
        config_module.parse_int_list(text)
    with pytest.raises(AugkitError) as error:
        TrainConfig().replace({"hidden": text}, source="--set")
    assert str(error.value).startswith("--set: hidden must be a list of integers, separated by commas or spaces "
                                       "(for example 512,512 or '512 512')")  # fmt: skip


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=8), st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_list_written_with_any_separators_reads_back(widths, data):
    separators = st.sampled_from([",", " ", ", ", " ,", "  ", "\t", " , "])
    text = str(widths[0]) + "".join(data.draw(separators) + str(w) for w in widths[1:])
    assert config_module.parse_int_list(text) == tuple(widths)


def test_init_aliases_are_saved_as_the_name_they_stand_for(tmp_path):
    (tmp_path / "c.yaml").write_text("init: xavier\n")
    assert TrainConfig.load(tmp_path / "c.yaml").init == "xavier_normal"
    assert TrainConfig().replace({"init": "he"}).init == TrainConfig(init="kaiming").init == "kaiming_normal"
    assert TrainConfig(init="he") == TrainConfig(init="kaiming_normal")  # compare equal in ablation tables


def test_lr_scaling_takes_none_or_linear_and_its_scaled_lr_stays_in_float32():
    assert TrainConfig().lr_scaling == "none" and TrainConfig(lr_scaling="linear").lr_scaling == "linear"
    with pytest.raises(AugkitError, match=r"^lr_scaling must be none or linear, got 'sqrt'$"):
        TrainConfig().replace({"lr_scaling": "sqrt"})
    TrainConfig(lr=3e38, batch_size=256, lr_scaling="linear")
    with pytest.raises(AugkitError, match=r"^lr \* batch_size / 256 must be in \(0, 3.40282e\+38\], got 6e\+38"):
        TrainConfig(lr=3e38, batch_size=512, lr_scaling="linear")
