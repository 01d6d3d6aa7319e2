"""Why the rules turn an input down (no I/O). Each kind has a stable ``code`` for callers;
the HTTP layer maps the kind to its status (404, 403, 409, 422)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class Rejected(Exception):
    """An input the rules turn down; nothing of it is applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(Rejected):
    """No such task, volunteer, squad, recipient or visit."""

    def __init__(self, message: str) -> None:
        super().__init__("not_found", message)


class Forbidden(Rejected):
    """The caller may not do this to this object (another volunteer's task or visit)."""


class Conflict(Rejected):
    """The object is not in a state that allows this (or already exists)."""


class Invalid(Rejected):
    """A field of the input is not acceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("validation_error", message)
        self.field = field


def refuse_nulls(changes: Mapping[str, Any], keys: Iterable[str]) -> None:
    """A change may not erase these fields (``null`` for one of them is invalid)."""
    for key in keys:
        if key in changes and changes[key] is None:
            raise Invalid(key, f"{key} cannot be null.")
