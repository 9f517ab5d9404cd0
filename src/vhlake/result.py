"""``Result = Ok | Err``: what the analytics return instead of raising, as ValidaHub's app expects.

Example:
    >>> match Ok(3):
    ...     case Ok(value):
    ...         print(value)
    ...     case Err(message):
    ...         print("failed:", message)
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ok(Generic[T]):
    value: T

    def is_ok(self) -> Literal[True]:
        return True


@dataclass(frozen=True)
class Err:
    """Why a call failed: ``invalid_argument`` (the caller's fault), ``forbidden`` (outside what the
    caller may see) or ``query`` (the engine's)."""

    message: str
    kind: Literal["invalid_argument", "forbidden", "query"] = "query"

    def is_ok(self) -> Literal[False]:
        return False


Result = Ok[T] | Err
