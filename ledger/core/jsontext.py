"""JSON text as `json.dumps(value, ensure_ascii=False, indent=2, default=str)` writes it, faster.

With an indent, the standard library encodes in pure Python, one generator per nested
value; `ledger history --json` at 100,000 runs spent more time there than computing the
history. `dumps` here builds the same text, byte for byte, with one list of parts per
call and the C string encoder, and `write_list` writes a list an item at a time, as one
`dumps` of the whole list would print it.

Only what the ledger prints is supported as the standard library does it (dicts, lists,
tuples, str, int, float, bool, None, anything else through `str`); a value that is
neither calls `default` (`str`) exactly where json.dumps would.
"""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any, Callable, Iterable

_INDENT = "  "
_FLOAT_REPR = float.__repr__
_INT_REPR = int.__repr__


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return _FLOAT_REPR(value)


def _key(key: Any) -> str:
    # What json.dumps makes of a dict key (skipkeys=False: any other key is a TypeError).
    if isinstance(key, str):
        return encode_basestring(key)
    if isinstance(key, float):
        return encode_basestring(_float(key))
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return encode_basestring(_INT_REPR(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")


def dumps(value: Any, default: Callable[[Any], Any] = str) -> str:
    """`json.dumps(value, ensure_ascii=False, indent=2, default=default)`."""
    parts: list[str] = []
    _encode(value, "\n", parts, default, set())
    return "".join(parts)


def write_list(items: Iterable[Any], write: Callable[[str], Any], default: Callable[[Any], Any] = str) -> None:
    """Write the list of `items` followed by a newline, as `dumps(list(items))` would, an item at a time."""
    first = True
    for item in items:
        parts = ["[\n  " if first else ",\n  "]
        _encode(item, "\n  ", parts, default, set())
        write("".join(parts))
        first = False
    write("[]\n" if first else "\n]\n")


def _encode(value: Any, newline: str, parts: list[str], default: Callable[[Any], Any], seen: set[int]) -> None:
    """Append the text of `value`, nested at `newline` (a newline and the current indent)."""
    kind = type(value)
    if kind is str:
        parts.append(encode_basestring(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif kind is int:
        parts.append(_INT_REPR(value))
    elif kind is float:
        parts.append(_float(value))
    elif kind is dict or kind is list or kind is tuple:
        _container(value, kind is dict, newline, parts, default, seen)
    elif isinstance(value, str):
        parts.append(encode_basestring(value))
    elif isinstance(value, int):
        parts.append(_INT_REPR(value))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, (list, tuple)):
        _container(value, False, newline, parts, default, seen)
    elif isinstance(value, dict):
        _container(value, True, newline, parts, default, seen)
    else:
        marker = id(value)
        if marker in seen:
            raise ValueError("Circular reference detected")
        seen.add(marker)
        _encode(default(value), newline, parts, default, seen)
        seen.discard(marker)


_PREFIXES: dict[tuple[Any, ...], list[str]] = {}  # (newline, *keys) -> each key's text and what comes before it


def _prefixes(value: dict[Any, Any], inner: str) -> list[str]:
    """`,` or `{`, the newline and indent, the key's text and `: `, for each key of `value`."""
    cache_key = (inner, *value)
    found = _PREFIXES.get(cache_key)
    if found is None:
        found = [("{" if i == 0 else ",") + inner + (encode_basestring(k) if type(k) is str else _key(k)) + ": "
                 for i, k in enumerate(value)]
        # Only keys that are all str are kept: 0, 0.0 and False are one dict key but three texts.
        if all(type(k) is str for k in value):
            if len(_PREFIXES) >= 1024:
                _PREFIXES.clear()
            _PREFIXES[cache_key] = found
    return found


def _container(value: Any, is_dict: bool, newline: str, parts: list[str], default: Callable[[Any], Any],
               seen: set[int]) -> None:
    if not value:
        parts.append("{}" if is_dict else "[]")
        return
    marker = id(value)
    if marker in seen:
        raise ValueError("Circular reference detected")
    seen.add(marker)
    inner = newline + _INDENT
    append = parts.append
    if is_dict:
        pairs = zip(_prefixes(value, inner), value.values())
        close = newline + "}"
    else:
        separator = "," + inner
        pairs = zip(["[" + inner, *[separator] * (len(value) - 1)], value)
        close = newline + "]"
    for prefix, item in pairs:
        append(prefix)
        kind = type(item)
        if kind is str:
            append(encode_basestring(item))
        elif item is None:
            append("null")
        elif kind is float:
            append(_float(item))
        elif kind is int:
            append(_INT_REPR(item))
        elif item is True:
            append("true")
        elif item is False:
            append("false")
        elif kind is dict or kind is list:
            _container(item, kind is dict, inner, parts, default, seen)
        else:
            _encode(item, inner, parts, default, seen)
    append(close)
    seen.discard(marker)
