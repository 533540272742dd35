"""The one error type for user mistakes.

ComfyUI shows an exception's message in the UI and returns it as
``execution_error`` over the API, so the message is the whole user interface
for a mistake: it names the input, says what was wrong and what was expected.
It shows the type as ``module.qualname`` too, and inside ComfyUI the pack's
module name is its folder's path, so the pack's exception classes carry the
short name :data:`DISPLAY_MODULE` (``PoseAnimate.InputError``) instead.
Messages are plain text: one line, no terminal escape codes (a library's
error may bring them, e.g. torch's refusal of a pickle).
"""
from __future__ import annotations

import re

DISPLAY_MODULE = "PoseAnimate"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[@-Z\\-_]")


def short_name(cls: type) -> type:
    """Give an exception class the module name ComfyUI shows in front of it (see the module docstring)."""
    cls.__module__ = DISPLAY_MODULE
    return cls


def plain(text: str) -> str:
    """``text`` without terminal escape codes (colours, bold)."""
    return _ANSI.sub("", text)


@short_name
class InputError(ValueError):
    """A user-supplied input (file, tensor, widget value) is not acceptable."""

    def __init__(self, input_name: str, problem: str, expected: str | None = None):
        self.input_name = input_name
        self.problem = problem
        self.expected = expected
        message = f"{input_name}: {problem}"
        if expected:
            message += f"; expected {expected}"
        super().__init__(" ".join(plain(message).split()))  # one line, whatever a wrapped library error brought in

    def __reduce__(self):  # the class's module is a display name: rebuild from the parts, not by import path
        return _rebuild_input_error, (self.input_name, self.problem, self.expected, self.args)


def _rebuild_input_error(input_name: str, problem: str, expected: str | None, args: tuple) -> InputError:
    err = InputError(input_name, problem, expected)
    err.args = args
    return err


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of a library's error, cut to ``limit`` characters, for a one-line message."""
    line = next((plain(s).strip() for s in str(err).splitlines() if plain(s).strip()), type(err).__name__)
    return line if len(line) <= limit else line[: limit - 3] + "..."


_PICKLE_REASONS = (re.compile(r"GLOBAL (\S+) was not an allowed global"), re.compile(r"unsupported GLOBAL (\S+)"),
                   re.compile(r"Unsupported operand (\S+)"), re.compile(r"(\S+) must be (\S+) to load"))


def pickle_refusal(err: BaseException) -> str:
    """What torch's weights-only unpickler refused, in a few words (its own message is a page of advice
    with escape codes): ``it refers to posix.system``, else the message's first line."""
    text = plain(str(err))
    for pattern in _PICKLE_REASONS:
        found = pattern.search(text)
        if found:
            return f"it refers to {found.group(1).rstrip('.,')}" if "GLOBAL" in pattern.pattern \
                else first_line(found.group(0))
    return first_line(err)
