"""Read and write the log's "Arguments" cells, in whatever form a team wrote them.

Forms are tried in this order; the first that reads the whole cell wins, and ``form`` says
which it was:

``namespace`` (status "ok")
    An argparse Namespace as Python prints it, the form this codebase writes:
    ``batch_size=8, <br>criterion='focal', <br>lr=5e-05``, ``key=repr(value)`` joined by
    ``", <br>"``, sometimes wrapped in ``Namespace(...)`` or left with a stray ``)``. Each
    value is read with ``ast.literal_eval`` on its own text.
``json`` / ``dict`` (status "ok")
    ``{"lr": 0.001}`` or ``{'lr': 1e-3}``, ``<br>`` standing for a newline. Every key must
    be a name (below) written out plainly, every value JSON data; duplicate keys are errors.
``flags`` (status "ok")
    A command line: ``--lr 0.001 --epochs 10``, ``--k=v``, ``-k v``, a bare ``--amp``
    (True), after any leading command (``python train.py``, ``CUDA_VISIBLE_DEVICES=0``).
    ``--no-amp`` is the key ``no_amp``; a single-dash name is taken whole (``-lr``, and
    ``-b8`` is the key ``b8``: short options are not split). After the first flag every
    word must be a flag or the value of the flag before it (a lone ``\\`` continues a line).
``lines`` (status "loose")
    Free ``key=value`` or ``key: value`` items separated by ``<br>``, ``,``, ``;`` or
    newlines: ``loss function=CrossEntropyLoss<br>epoch : 10``. A comma inside brackets or
    quotes does not split, so ``optimizer: adamw(lr=1e-4, wd=0.01)`` is one item. As in
    YAML, ``:`` separates only when a space or the end follows it, so URLs, times and drive
    letters stay whole. Every item must be a pair; one that is not leaves the whole cell
    unparsed rather than half read. "loose" says the keys came from free text.

Otherwise the status is "unparsed" and ``error`` says why for each form the cell resembles;
an empty cell or ``None`` is "none". The caller keeps the raw cell in every case.

Keys: in the namespace form, exactly as written. Elsewhere a key is a name of one to three
words (a letter or ``_`` first; letters, digits, ``_``, ``-``, ``.`` inside, ending in a
letter, digit or ``_``), and is normalised by turning each ``-`` and each run of whitespace
into ``_`` (``batch size`` and ``--batch-size`` give ``batch_size``). Case is kept: ``-b``
and ``-B`` are different options. So every key found is in the cell, whole, with each
``_`` standing for one ``_``, one ``-`` or one run of whitespace: a key is never invented.

Values in the flags and lines forms are read as int, float, True/False/None or a quoted
string with no backslash; anything else (``adam(lr=1e-4)``, ``[10, 20]``, ``inf``) is kept
as its stripped text, so every string value found there is text of the cell. Nothing is
ever evaluated, and the standard library only: ``ledger list`` imports this at start-up.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ParsedArguments", "parse_arguments", "parse_value", "render_arguments"]

Status = Literal["ok", "loose", "none", "unparsed"]
Form = Literal["namespace", "json", "dict", "flags", "lines"]

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_GAP = re.compile(r"(?:\s+|<br\s*/?>)*", re.IGNORECASE)
_KEY = re.compile(r"(\w+)\s*=")
_WRAPPER = "Namespace("
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = frozenset(")]}")
_SHOWN_VALUE_CHARS = 40

# A key outside the namespace form: one to three words, the first not starting with a digit.
_WORD = r"[^\W\d](?:[\w.\-]*\w)?"
_NAME = rf"{_WORD}(?:\s+\w(?:[\w.\-]*\w)?){{0,2}}"
_NAME_ONLY = re.compile(_NAME)
_PAIR = re.compile(rf"\s*({_NAME})\s*(?:=|:(?=\s|$))")
_ITEM_SEPARATOR = re.compile(r"<br\s*/?>|[,;\n]", re.IGNORECASE)
_FLAG = re.compile(rf"--?({_WORD})(?:=(.*))?", re.DOTALL)
_FLAG_START = re.compile(rf"(?:^|[\s>])--?{_WORD}")
_ENV_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PLAIN_STRING = re.compile(r"'[^'\\\n]*'|\"[^\"\\\n]*\"")
_WORDS = {"True": True, "False": False, "None": None}
_NO_FORM = "no key=value, key: value, --flag or {...} in it"


@dataclass(frozen=True)
class ParsedArguments:
    """One Arguments cell, read.

    ``status`` is "ok" (``values`` holds the dict), "loose" (``values`` holds keys read from
    free ``key=value`` / ``key: value`` text), "none" (the cell says there were no arguments:
    empty or ``None``) or "unparsed" (``error`` says why; keep the raw text). ``form`` names
    the form read: "namespace", "json", "dict", "flags" or "lines"; None when nothing was.
    """

    status: Status
    values: dict[str, Any] | None = None
    error: str | None = None
    form: Form | None = None


class _CellError(Exception):
    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message if pos is None else f"{message} at column {pos + 1}")


def parse_arguments(cell: str | None) -> ParsedArguments:
    """Parse an Arguments cell into a dict without evaluating code; never raises.

    Args:
        cell: the cell's text as it appears in the Markdown table, or None.
    """
    if cell is None or _BR.sub(" ", cell).strip() in ("", "None"):
        return ParsedArguments("none")
    reasons = []
    for name, read, resembles in _READERS:
        try:
            form, values = read(cell)
        except _CellError as exc:
            if resembles(cell):
                reasons.append(f"as {name}: {exc}")
            continue
        return ParsedArguments("loose" if form == "lines" else "ok", values, None, form)
    return ParsedArguments("unparsed", error="; ".join(reasons) or _NO_FORM)


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


# The namespace form.


def _read_namespace(text: str) -> tuple[Form, dict[str, Any]]:
    return "namespace", _parse_items(text)


def _resembles_namespace(text: str) -> bool:
    pos = _skip_gap(text, 0)
    return text.startswith(_WRAPPER, pos) or _KEY.match(text, pos) is not None


# Shared by the other forms.


def _normalise(key: str) -> str:
    return re.sub(r"\s+", "_", key).replace("-", "_")


def _scalar(text: str) -> Any:
    """Type a value of the flags or lines form; what is not a plain scalar stays the text."""
    if text in _WORDS:
        return _WORDS[text]
    if _PLAIN_STRING.fullmatch(text):
        return text[1:-1]
    if _NUMBER.fullmatch(text):
        try:
            value = _literal(text)
        except Exception:  # "007", or more digits than int() reads
            return text
        if not isinstance(value, float) or math.isfinite(value):
            return value
    return text


def _put(values: dict[str, Any], key: str, value: Any, pos: int | None = None) -> None:
    if key in values:
        raise _CellError(f"duplicate key {key!r}", pos)
    values[key] = value


# The json and dict forms.


def _read_mapping(text: str) -> tuple[Form, dict[str, Any]]:
    source = _tags_to_newlines(text).strip()
    if not source.startswith("{"):
        raise _CellError("expected '{'")
    try:
        found = json.loads(source, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _CellError:
        raise
    except Exception as exc:  # ValueError, or RecursionError on deep nesting
        form, found = "dict", _dict_literal(source, getattr(exc, "msg", str(exc)))
    else:
        form = "json"
    return form, _mapping_values(found, source)


def _resembles_mapping(text: str) -> bool:
    return text.startswith("{", _skip_gap(text, 0))


def _tags_to_newlines(text: str) -> str:
    pieces: list[str] = []
    piece_start = pos = 0
    while pos < len(text):
        if text[pos] in "'\"":
            pos = _skip_string(text, pos)
        elif tag := _BR.match(text, pos):
            pieces.append(text[piece_start:pos] + "\n")
            pos = piece_start = tag.end()
        else:
            pos += 1
    pieces.append(text[piece_start:])
    return "".join(pieces)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in pairs:
        _put(values, key, value)
    return values


def _no_constant(name: str) -> Any:
    raise _CellError(f"{name} is not a number JSON stores")


def _dict_literal(source: str, json_error: str) -> dict[Any, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            node = ast.parse(source, mode="eval").body
    except Exception as exc:  # SyntaxError, ValueError, RecursionError
        reason = getattr(exc, "msg", None) or str(exc)
        raise _CellError(f"neither JSON ({json_error}) nor a Python dict ({reason})") from None
    if not isinstance(node, ast.Dict):
        raise _CellError("not a dict")
    values: dict[Any, Any] = {}
    for key_node, value_node in zip(node.keys, node.values):
        if not isinstance(key_node, ast.Constant):
            raise _CellError("a key is not a string")
        try:
            value = _literal(value_node)
        except Exception:
            raise _CellError(f"value of {key_node.value!r} is not a Python literal") from None
        _put(values, key_node.value, value)
    return values


def _mapping_values(found: Any, source: str) -> dict[str, Any]:
    if not isinstance(found, dict):
        raise _CellError("not an object")
    values: dict[str, Any] = {}
    for key, value in found.items():
        if not isinstance(key, str) or not _NAME_ONLY.fullmatch(key):
            raise _CellError(f"key {key!r} is not a name")
        if f'"{key}"' not in source and f"'{key}'" not in source:
            raise _CellError(f"key {key!r} is written with escapes")
        if not _is_json_data(value):
            raise _CellError(f"value of {key!r} is not JSON data: {_shorten(repr(value))}")
        _put(values, _normalise(key), value)
    return values


def _is_json_data(value: Any) -> bool:
    # A loop, not recursion: JSON nests deeper than Python's recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            pending.extend(item.values())
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif item is not None and not isinstance(item, (bool, int, str)):
            return False
    return True


# The flags form.


def _read_flags(text: str) -> tuple[Form, dict[str, Any]]:
    tokens = _tokens(text)
    first = next((i for i, (token, _) in enumerate(tokens) if _FLAG.fullmatch(token)), None)
    if first is None:
        raise _CellError("no --flag")
    for token, pos in tokens[:first]:
        if not _is_command_word(token):
            raise _CellError(f"{_shorten(token)!r} before the first flag is not a command", pos)
    values: dict[str, Any] = {}
    key = None  # the flag that may still take a value
    for token, pos in tokens[first:]:
        if token == "\\":
            continue  # a shell line continuation
        flag = _FLAG.fullmatch(token)
        if flag and flag[2] is None:
            key = _normalise(flag[1])
            _put(values, key, True, pos)  # a bare flag, unless a value follows
        elif flag:
            _put(values, _normalise(flag[1]), _scalar(flag[2]), pos)
            key = None
        elif key is not None:
            values[key] = _scalar(token)
            key = None
        else:
            raise _CellError(f"{_shorten(token)!r} is neither a flag nor a flag's value", pos)
    return "flags", values


def _resembles_flags(text: str) -> bool:
    return _FLAG_START.search(text) is not None


def _tokens(text: str) -> list[tuple[str, int]]:
    """Split a command line at whitespace and ``<br>`` outside quotes; keep each word as written."""
    tokens: list[tuple[str, int]] = []
    start = None
    pos = 0
    while pos < len(text):
        tag = _BR.match(text, pos)
        if tag or text[pos].isspace():
            if start is not None:
                tokens.append((text[start:pos], start))
                start = None
            pos = tag.end() if tag else pos + 1
            continue
        if start is None:
            start = pos
        pos = _skip_string(text, pos) if text[pos] in "'\"" else pos + 1
    if start is not None:
        tokens.append((text[start:], start))
    return tokens


def _is_command_word(token: str) -> bool:
    # Words with pair punctuation belong to the lines form; VAR=value sets the environment.
    if any(char in token for char in ",;:"):
        return False
    return "=" not in token or _ENV_ASSIGNMENT.fullmatch(token) is not None


# The lines form.


def _read_lines(text: str) -> tuple[Form, dict[str, Any]]:
    values: dict[str, Any] = {}
    for start, end in _loose_items(text):
        start = end - len(text[start:end].lstrip())
        if start < end:
            key, value = _loose_pair(text, start, end)
            _put(values, key, value, start)
    if not values:
        raise _CellError("no key=value or key: value")
    return "lines", values


def _resembles_lines(text: str) -> bool:
    return "=" in text or ":" in text


def _loose_items(text: str) -> list[tuple[int, int]]:
    """Where each item starts and ends: separators outside brackets and quotes split."""
    items: list[tuple[int, int]] = []
    closers: list[tuple[str, int]] = []
    start = pos = 0
    while pos < len(text):
        char = text[pos]
        if char in "'\"" and _opens_string(text, pos):
            pos = _skip_string(text, pos)
            continue
        separator = None if closers else _ITEM_SEPARATOR.match(text, pos)
        if separator:
            items.append((start, pos))
            pos = start = separator.end()
            continue
        if char in _OPENERS:
            closers.append((_OPENERS[char], pos))
        elif char in _CLOSERS:
            if not closers:
                raise _CellError(f"unexpected {char!r}", pos)
            expected, _ = closers.pop()
            if char != expected:
                raise _CellError(f"expected {expected!r}, found {char!r}", pos)
        pos += 1
    if closers:
        raise _CellError(f"unclosed {text[closers[-1][1]]!r}", closers[-1][1])
    items.append((start, len(text)))
    return items


def _opens_string(text: str, pos: int) -> bool:
    # The apostrophe in "it's" or "models'" is part of a word, not a quote.
    return pos == 0 or not (text[pos - 1].isalnum() or text[pos - 1] == "_")


def _loose_pair(text: str, start: int, end: int) -> tuple[str, Any]:
    match = _PAIR.match(text, start, end)
    if match is None:
        item = text[start:end].rstrip()
        raise _CellError(f"{_shorten(item)!r} is not key=value or key: value", start)
    key = _normalise(match[1])
    value_text = text[match.end() : end].strip()
    if not value_text:
        raise _CellError(f"missing value for {key!r}", match.end())
    return key, _scalar(value_text)


_Reader = Callable[[str], tuple[Form, dict[str, Any]]]
_READERS: tuple[tuple[str, _Reader, Callable[[str], bool]], ...] = (
    ("namespace", _read_namespace, _resembles_namespace),
    ("JSON or dict", _read_mapping, _resembles_mapping),
    ("flags", _read_flags, _resembles_flags),
    ("lines", _read_lines, _resembles_lines),
)
