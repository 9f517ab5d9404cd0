"""The body of ``POST /v1/events`` (one event or an array of them) split into events, each judged alone.

The whole body is parsed at once when it can be (orjson: the common case). When it cannot (one event is
not JSON, holds a lone surrogate, or nests deeper than orjson's own limit of 1024) the top-level array is
cut at its commas by one linear scan that skips over strings, and each element is parsed on its own, so
one bad event never sinks the others. Nothing here recurses: no depth of input can exhaust the stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from vhlake.api.limits import ApiLimits
from vhlake.api.problems import Problem
from vhlake.pipeline.expectations import MAX_PAYLOAD_BYTES

_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{},]')  # a whole string, or one structural character
_OPENS, _CLOSES, _COMMA = frozenset(b"[{"), frozenset(b"]}"), ord(",")
_REASON_CHARS = 200


@dataclass
class Judged:
    """The events of one body: those parsed (for :func:`field_limit_breach` and validation), and why the
    others could not be."""

    count: int
    events: list[tuple[int, Any]] = field(default_factory=list)  # (index in the body, parsed JSON)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (index in the body, why)


def split_events(body: bytes, limits: ApiLimits) -> Judged:
    """The events in ``body``; raises :class:`Problem` (400, 413) only when the body as a whole is unusable."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _element_by_element(body, limits, str(exc))
    items = document if isinstance(document, list) else [document]
    _check_count(len(items), limits)
    return Judged(len(items), list(enumerate(items)))


def _element_by_element(body: bytes, limits: ApiLimits, whole_error: str) -> Judged:
    opening = len(body) - len(body.lstrip())
    if body[opening : opening + 1] != b"[":  # one event, and it is not JSON: the request is the event
        raise Problem(400, "body is not JSON", whole_error[:_REASON_CHARS])
    spans = _top_level_spans(body, opening)
    _check_count(len(spans), limits)
    judged = Judged(len(spans))
    for index, (begin, end, depth) in enumerate(spans):
        if depth > limits.max_depth:  # never handed to a parser
            judged.refused.append((index, f"nested deeper than {limits.max_depth} levels"))
            continue
        try:
            judged.events.append((index, orjson.loads(body[begin:end])))
        except orjson.JSONDecodeError as exc:
            judged.refused.append((index, f"not JSON: {str(exc)[:_REASON_CHARS]}"))
    return judged


def _top_level_spans(body: bytes, opening: int) -> list[tuple[int, int, int]]:
    """Each element of the array opened at ``opening``: (start, end, how deep it nests)."""
    spans: list[tuple[int, int, int]] = []
    depth = deepest = 0
    begin = opening + 1
    for token in _TOKENS.finditer(body, opening + 1):
        char = body[token.start()]
        if char in _OPENS:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSES and depth > 0:
            depth -= 1
        elif char in _CLOSES:  # the array's own end
            if body[token.end() :].strip():
                raise Problem(400, "body is not JSON", "text after the array of events")
            if spans or body[begin : token.start()].strip():
                spans.append((begin, token.start(), deepest))
            return spans
        elif char == _COMMA and depth == 0:
            spans.append((begin, token.start(), deepest))
            begin, deepest = token.end(), 0
    raise Problem(400, "body is not JSON", "the array of events is not closed")


def _check_count(count: int, limits: ApiLimits) -> None:
    if count > limits.max_events:
        raise Problem(413, "too many events", f"at most {limits.max_events:,} per request")


def field_limit_breach(event: Any, limits: ApiLimits) -> str | None:
    """Why parsed ``event`` exceeds the field limits (nesting, string sizes, error types, the payload's
    size), or None. The payload's size is the pipeline's ``payload_too_large`` rule, measured on the same
    minified JSON bronze keeps, so the API never accepts an event the pipeline would quarantine for it."""
    stack: list[tuple[Any, int, str]] = [(event, 1, "")]
    while stack:  # an explicit stack: the depth bound is checked before anything deeper is looked at
        value, depth, where = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > limits.max_depth:
            return f"{where}: nested deeper than {limits.max_depth} levels"
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in pairs:
            if isinstance(child, str):
                if len(child) > limits.max_string_chars:
                    return f"{_path(where, key)}: longer than {limits.max_string_chars:,} characters"
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1, _path(where, key)[:_REASON_CHARS]))
            if isinstance(key, str) and len(key) > limits.max_string_chars:
                return f"{where or 'event'}: a field name longer than {limits.max_string_chars:,} characters"
    payload = event.get("payload") if isinstance(event, dict) else None
    error_types = payload.get("error_types") if isinstance(payload, dict) else None
    if isinstance(error_types, dict) and len(error_types) > limits.max_error_types:
        return f"payload.error_types: more than {limits.max_error_types:,} entries"
    if payload is not None and len(orjson.dumps(payload)) > MAX_PAYLOAD_BYTES:  # the pipeline's own rule
        return f"payload: more than {MAX_PAYLOAD_BYTES:,} bytes of JSON (payload_too_large)"
    return None


def _path(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)
