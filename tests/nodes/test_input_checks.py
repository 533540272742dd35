"""Every FLOAT input of every node refuses NaN and infinity with the pack's one-line message, before work."""
from __future__ import annotations

import math

import pytest

from poseanimate.errors import InputError
from poseanimate.nodes import NODE_CLASS_MAPPINGS
from poseanimate.nodes.input_checks import check_finite, float_inputs

CASES = [(key, name) for key, cls in sorted(NODE_CLASS_MAPPINGS.items()) for name in float_inputs(cls)]


def test_every_float_input_is_covered():
    assert len(CASES) >= 20
    assert ("PoseAnimateSampler", "cfg") in CASES


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key,name", CASES)
def test_float_input_refuses_non_finite(key, name, value):
    cls = NODE_CLASS_MAPPINGS[key]
    declared = {**cls.INPUT_TYPES()["required"], **(cls.INPUT_TYPES().get("optional") or {})}
    # every other input a placeholder: the check runs before the node looks at any of them
    arguments = {n: object() for n in declared}
    for other in float_inputs(cls):
        arguments[other] = float_inputs(cls)[other].get("default", 1.0)
    arguments[name] = value
    with pytest.raises(InputError) as err:
        getattr(cls(), cls.FUNCTION)(**arguments)
    message = str(err.value)
    assert message.startswith(f"{name}: is {value}") and "finite number" in message and "\n" not in message


def test_positional_arguments_are_checked_too():
    cls = NODE_CLASS_MAPPINGS["PoseAnimateSampler"]
    with pytest.raises(InputError, match="^cfg: is nan"):
        cls().sample(object(), object(), 0, 1, math.nan, 5.0, "euler", 21, 4, "uniform")


def test_check_finite_refuses_non_numbers():
    check_finite("x", 1.5)
    check_finite("x", 2)
    for bad in ("1.0", None, True):
        with pytest.raises(InputError, match="^x: is "):
            check_finite("x", bad)
