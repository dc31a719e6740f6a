"""`ledger.core.jsontext` writes what `json.dumps(..., ensure_ascii=False, indent=2, default=str)`
writes, byte for byte: every `--json` of the ledger prints through it."""

from __future__ import annotations

import datetime
import enum
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.jsontext import dumps, write_list


def reference(value):
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text())
keys = st.text() | st.integers() | st.floats(allow_nan=True) | st.booleans() | st.none()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_same_text_as_json_dumps(value):
    assert dumps(value) == reference(value)


@settings(max_examples=100, deadline=None)
@given(st.lists(values, max_size=5))
def test_a_list_written_an_item_at_a_time_is_one_dumps_of_it(items):
    out = io.StringIO()
    write_list(iter(items), out.write)
    assert out.getvalue() == reference(items) + "\n"


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


@pytest.mark.parametrize("value", [
    {"when": datetime.datetime(2026, 12, 1, 10, 0), "where": Path("/tmp/x"), "set": {1}},
    [math.nan, math.inf, -math.inf, -0.0, 1e-05, 0.1 + 0.2, 10**30],
    {Name("a"): Name("b\n\"c\""), "n": Colour.RED, 2.5: True, None: False, True: None, 3: []},
    {"nested": [{}, [], [[]], {"a": {"b": {}}}], "text": "한국어 \u0000 \u2028 \\ /"},
    (1, (2, 3)),
    "",
])
def test_what_the_ledger_prints_and_its_edges(value):
    assert dumps(value) == reference(value)


def test_what_json_refuses_it_refuses():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        dumps(loop)
    with pytest.raises(TypeError):
        dumps({(1, 2): "tuple key"})


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_a_markdown_table_printed_a_chunk_at_a_time_is_the_whole_table(count, capsys):
    from ledger.cli.analysis import _markdown_table, _print_markdown_rows

    header = ["Run", "Notes"]
    items = [{"name": f"r{i}", "notes": f"a | b\nline {i}"} for i in range(count)]
    rows_of = lambda part: [[item["name"], item["notes"]] for item in part]  # noqa: E731
    _print_markdown_rows(header, iter(items), rows_of, chunk=2)
    assert capsys.readouterr().out == _markdown_table(header, rows_of(items))
