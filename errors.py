"""The one error type for user mistakes.

ComfyUI shows an exception's message in the UI and returns it as
``execution_error`` over the API, so the message is the whole user interface
for a mistake: it names the input, says what was wrong and what was expected.
"""
from __future__ import annotations


class InputError(ValueError):
    """A user-supplied input (file, tensor, widget value) is not acceptable."""

    def __init__(self, input_name: str, problem: str, expected: str | None = None):
        self.input_name = input_name
        self.problem = problem
        self.expected = expected
        message = f"{input_name}: {problem}"
        if expected:
            message += f"; expected {expected}"
        super().__init__(" ".join(message.split()))  # one line, whatever a wrapped library error brought in


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of a library's error, cut to ``limit`` characters, for a one-line message."""
    line = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
    return line if len(line) <= limit else line[: limit - 3] + "..."
