"""Read and write the log's "Arguments" cells: an argparse Namespace as Python prints it.

A cell looks like ``batch_size=8, <br>criterion='focal', <br>lr=5e-05``: ``key=repr(value)``
with keys sorted, joined by ``", <br>"``, sometimes wrapped in ``Namespace(...)`` or left with
a stray ``)``. Values are read with ``ast.literal_eval`` on each value's text alone, never with
``eval``, and anything that is not in this form is kept raw with a reason instead of being
guessed into keys. Standard library only: ``ledger list`` imports this at start-up.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ParsedArguments", "parse_arguments", "parse_value", "render_arguments"]

Status = Literal["ok", "none", "unparsed"]

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_GAP = re.compile(r"(?:\s+|<br\s*/?>)*", re.IGNORECASE)
_KEY = re.compile(r"(\w+)\s*=")
_WRAPPER = "Namespace("
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = frozenset(")]}")
_SHOWN_VALUE_CHARS = 40


@dataclass(frozen=True)
class ParsedArguments:
    """One Arguments cell, read.

    ``status`` is "ok" (``values`` holds the dict), "none" (the cell says there were no
    arguments: empty or ``None``) or "unparsed" (``error`` says why; keep the raw text).
    """

    status: Status
    values: dict[str, Any] | None = None
    error: str | None = None


class _CellError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at column {pos + 1}")


def parse_arguments(cell: str | None) -> ParsedArguments:
    """Parse an Arguments cell into a dict without evaluating code; never raises.

    Args:
        cell: the cell's text as it appears in the Markdown table, or None.
    """
    if cell is None:
        return ParsedArguments("none")
    if _BR.sub(" ", cell).strip() in ("", "None"):
        return ParsedArguments("none")
    try:
        values = _parse_items(cell)
    except _CellError as exc:
        return ParsedArguments("unparsed", error=str(exc))
    return ParsedArguments("ok", values=values)


def render_arguments(values: Mapping[str, Any], *, separator: str = ", <br>") -> str:
    """Write arguments in the log's style: keys sorted, ``key=repr(value)``, joined by separator.

    An empty mapping renders as "", which reads back as status "none".

    Args:
        values: argument names (Python identifiers) to Python literal values.
        separator: text between items; it must contain the comma for the cell to read back.

    Raises:
        ValueError: a key is not an identifier, or a value's repr is not a Python literal
            (e.g. ``float('nan')`` or a ``Path``), so the cell could not be read back.
    """
    items = []
    for key in sorted(values):
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"argument name {key!r} is not a Python identifier")
        text = repr(values[key])
        try:
            _literal(text)
        except Exception:
            raise ValueError(f"value of {key!r} has no literal form: {_shorten(text)}") from None
        items.append(f"{key}={text}")
    return separator.join(items)


def parse_value(text: str) -> Any:
    """Read a value typed on the command line: a Python literal if it is one, else the text.

    ``"0.0001"`` gives 0.0001, ``"True"`` gives True, ``"'focal'"`` and ``"focal"`` both give
    'focal'. Never evaluates code and never raises.

    Args:
        text: the text after ``key=`` in options such as ``--where`` and ``--set``.
    """
    try:
        return _literal(text.strip())
    except Exception:
        return text


def _literal(text: str) -> Any:
    # Invalid escapes such as '\d' in a logged path only warn; the value is still right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.literal_eval(text)


def _shorten(text: str) -> str:
    if len(text) <= _SHOWN_VALUE_CHARS:
        return text
    return text[: _SHOWN_VALUE_CHARS - 3] + "..."


def _skip_gap(text: str, pos: int) -> int:
    return _GAP.match(text, pos).end()


def _parse_items(text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    end = len(text)
    pos = _skip_gap(text, 0)
    wrapped = text.startswith(_WRAPPER, pos)
    if wrapped:
        pos = _skip_gap(text, pos + len(_WRAPPER))
    while pos < end:
        if text[pos] == ")":
            # The Namespace(...) closer, or the stray one the log keeps.
            after = _skip_gap(text, pos + 1)
            if after < end:
                raise _CellError("unexpected text after ')'", after)
            break
        item_start = pos
        key, value, pos = _parse_item(text, pos)
        if key in values:
            raise _CellError(f"duplicate key {key!r}", item_start)
        values[key] = value
        pos = _skip_gap(text, pos)
        if pos < end and text[pos] == ",":
            pos = _skip_gap(text, pos + 1)
        elif pos < end and text[pos] != ")":
            raise _CellError("expected ',' between items", pos)
    if not values and not wrapped:
        raise _CellError("expected key=value", _skip_gap(text, 0))
    return values


def _parse_item(text: str, pos: int) -> tuple[str, Any, int]:
    match = _KEY.match(text, pos)
    if match is None:
        raise _CellError("expected key=value", pos)
    key = match.group(1)
    if not key.isidentifier():
        raise _CellError(f"key {key!r} is not an identifier", pos)
    start = _skip_gap(text, match.end())
    value_text, end = _scan_value(text, start)
    if not value_text:
        raise _CellError(f"missing value for {key!r}", start)
    try:
        value = _literal(value_text)
    except Exception:
        raise _CellError(
            f"value of {key!r} is not a Python literal: {_shorten(value_text)}", start
        ) from None
    return key, value, end


def _scan_value(text: str, pos: int) -> tuple[str, int]:
    """Find where the value starting at pos ends; return its text (tags dropped) and the end.

    A value ends at a comma, a ``<br>`` or a closer that is outside any string or bracket.
    """
    closers: list[tuple[str, int]] = []
    pieces: list[str] = []
    piece_start = pos
    end = len(text)
    while pos < end:
        char = text[pos]
        if char in "'\"":
            pos = _skip_string(text, pos)
            continue
        if char == "<" and (tag := _BR.match(text, pos)):
            if not closers:
                break
            # Inside brackets the tag can only be the log's line break; a space keeps
            # "[1<br>2]" from fusing into 12.
            pieces.append(text[piece_start:pos] + " ")
            pos = piece_start = tag.end()
            continue
        if char in _OPENERS:
            closers.append((_OPENERS[char], pos))
        elif char in _CLOSERS:
            if not closers:
                break
            expected, _ = closers.pop()
            if char != expected:
                raise _CellError(f"expected {expected!r}, found {char!r}", pos)
        elif char == "," and not closers:
            break
        elif char == "#":
            # literal_eval would drop a comment silently; repr never writes one.
            raise _CellError("unexpected '#'", pos)
        pos += 1
    if closers:
        raise _CellError(f"unclosed {text[closers[-1][1]]!r}", closers[-1][1])
    pieces.append(text[piece_start:pos])
    return "".join(pieces).strip(), pos


def _skip_string(text: str, pos: int) -> int:
    """Return the index just past the string literal whose opening quote is at pos."""
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        close = text.find(quote * 3, pos + 3)
        # Backslashes still escape inside triple quotes.
        while close != -1 and _escaped(text, pos + 3, close):
            close = text.find(quote * 3, close + 1)
        if close == -1:
            raise _CellError("unterminated string", pos)
        return close + 3
    index = pos + 1
    end = len(text)
    while index < end:
        char = text[index]
        if char == "\\":
            index += 2
        elif char == quote:
            return index + 1
        elif char == "\n":
            break
        else:
            index += 1
    raise _CellError("unterminated string", pos)


def _escaped(text: str, start: int, index: int) -> bool:
    backslashes = 0
    while index - 1 - backslashes >= start and text[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
