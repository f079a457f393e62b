"""augkit.pipeline.parameters: every step's parameters described from the step itself (schema, signature,
docstring), for augkit's steps and albumentations' transforms alike."""

from __future__ import annotations

import inspect
import json

import pytest

from augkit.pipeline.parameters import ParameterInfo, describe_step, format_value
from augkit.pipeline.registry import create_step, list_steps, step_parameters, get_step


@pytest.mark.parametrize("name", list_steps("all"))
def test_every_step_is_described_parameter_by_parameter(name):
    summary, parameters = describe_step(name)
    assert summary and "\n" not in summary and "``" not in summary
    assert [p.name for p in parameters] == list(step_parameters(get_step(name)))
    for parameter in parameters:
        assert parameter.type or parameter.choices, parameter  # something says what it takes
        assert "\n" not in parameter.meaning and len(parameter.meaning) <= 200
        if parameter.choices and not parameter.type and not parameter.required:
            assert parameter.default in parameter.choices, parameter  # the choices were read right
        json.dumps(parameter.to_dict())
    p = next((p for p in parameters if p.name == "p"), None)
    assert p is None or p.bounds == "in [0, 1]"


@pytest.mark.parametrize("name", list_steps("augkit"))
def test_each_of_augkits_own_steps_says_what_every_parameter_means(name):
    _, parameters = describe_step(name)
    assert [p.name for p in parameters if not p.meaning] == []


@pytest.mark.parametrize("name", ["crop", "rotate", "GaussNoise", "Resize", "CoarseDropout", "Affine"])
def test_the_choices_shown_are_values_the_step_accepts(name):
    # Each choice and each default, given alone, builds the step: the description matches the checks.
    _, parameters = describe_step(name)
    required = {p.name: 64 for p in parameters if p.required}
    for parameter in parameters:
        for value in parameter.choices:
            create_step(name, **required, **{parameter.name: value})


class _Base:
    """Base.

    Args:
        inherited (int): documented on the base class only. Default: 3.
    """


class _Documented(_Base):
    """A step written as albumentations writes them.

    Args:
        limit ((int, int) or int): Range for the limit. Options:
            - If tuple (min, max): sampled from it
            - If int: from (-limit, limit)
            Default: (-20, 20)
        low, high: the two ends, as ``[low, high]``.
        long (float): The first sentence ends here. A second one does not count.
        OpenCV_flag (int): OpenCV stays capitalised.

    Targets:
        image
    """

    def __init__(self, limit=(-20, 20), low=0, high=1, long=0.5, OpenCV_flag=1, inherited=3, p=0.5):  # noqa: N803
        pass


def test_meanings_come_from_the_args_section_of_the_class_and_its_bases():
    meanings = {p.name: p.meaning for p in describe_step(_Documented)[1]}
    assert meanings == {
        "limit": "range for the limit",
        "low": "the two ends, as [low, high]",
        "high": "the two ends, as [low, high]",
        "long": "the first sentence ends here",
        "OpenCV_flag": "OpenCV stays capitalised",
        "inherited": "documented on the base class only",
        "p": "probability of applying the step to a sample (0 never, 1 always)",
    }


def test_values_are_written_as_a_spec_writes_them():
    assert [format_value(v) for v in (None, True, (0.08, 1.0), 4 / 3, "random", 1e-7)] == [
        "null", "true", "[0.08, 1]", "1.33333", "random", "1e-07"
    ]  # fmt: skip
    assert format_value(1, "mask_interpolation") == "1 (INTER_LINEAR)"
    assert format_value(4, "border_mode") == "4 (BORDER_REFLECT_101)"


def test_a_required_parameter_has_no_default_in_json():
    info = ParameterInfo("height", "int", inspect.Parameter.empty, (), "in [1, 32767]", "desired height")
    assert info.required and "default" not in info.to_dict()
