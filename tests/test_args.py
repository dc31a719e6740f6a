"""The log's Arguments cells: parsing without eval, rendering, and command-line values."""

import ast
import re
import subprocess
import warnings
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.args import ParsedArguments, parse_arguments, parse_value, render_arguments

SEED = Path(__file__).parent / "data" / "experiments.md"

ROW_1 = {
    "batch_size": 8,
    "criterion": "cross_entropy",
    "lr": 5e-05,
    "model": "DeepLabV3",
    "num_epochs": 10,
    "optimizer": "MADGRAD",
    "run_name": "DeepLabV3_cosinelr",
    "scheduler": "CosineAnnealingLR",
    "seed": 42,
    "val_batch_size": 8,
    "weight_decay": 0.0001,
}
ROW_7 = {
    "batch_size": 8,
    "criterion1": "cross_entropy",
    "criterion2": "focal",
    "cutmix": False,
    "lr": 0.0001,
    "model": "DeepLabV3",
    "multi_loss": True,
    "num_epochs": 20,
    "optimizer": "MADGRAD",
    "run_name": "multiple_aug_with_multi_loss",
    "scheduler": "CosineAnnealingLR",
    "seed": 42,
    "val_batch_size": 8,
    "weight_decay": 0.0001,
}
ROW_8 = {
    **ROW_7,
    "num_epochs": 25,
    "run_name": "label_smoothing_dual_loss_histogram_equalization",
}
EXPECTED_ROWS = [
    ROW_1,
    {**ROW_1, "lr": 0.0001, "run_name": "DeepLabV3_cosinelr_tmax_10", "weight_decay": 1e-06},
    {
        **ROW_1,
        "batch_size": 4,
        "criterion": "focal",
        "lr": 0.0001,
        "run_name": "DeepLabV3_cosinelr_tmax_10_focal_gamma_0",
        "val_batch_size": 4,
        "weight_decay": 1e-06,
    },
    {
        **ROW_1,
        "lr": 0.0001,
        "num_epochs": 15,
        "run_name": "DeepLabV3_cosinelr_tmax_10",
        "weight_decay": 1e-06,
    },
    {
        **ROW_1,
        "cutmix": True,
        "lr": 0.0001,
        "num_epochs": 20,
        "run_name": "DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix",
        "weight_decay": 1e-06,
    },
    {
        **ROW_1,
        "cutmix": False,
        "lr": 0.0001,
        "num_epochs": 20,
        "run_name": "DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug",
    },
    ROW_7,
    ROW_8,
    ROW_8,  # row 9 logged row 8's run_name again
    None,  # Ensemble
]


def strict(values):
    """A form that tells 1 from 1.0 from True and 0.0 from -0.0, key order aside."""
    return repr(sorted(values.items()))


def seed_arguments_cells():
    lines = SEED.read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    column = header.index("Arguments")
    return [line.strip("|").split("|")[column].strip() for line in table[2:]]


def test_seed_has_ten_rows():
    assert len(seed_arguments_cells()) == len(EXPECTED_ROWS) == 10


@pytest.mark.parametrize(
    ("row", "cell", "expected"),
    [
        (row, cell, expected)
        for row, (cell, expected) in enumerate(zip(seed_arguments_cells(), EXPECTED_ROWS), 1)
    ],
    ids=[f"row{row}" for row in range(1, len(EXPECTED_ROWS) + 1)],
)
def test_every_seed_row_parses_to_its_expected_dict(row, cell, expected):
    parsed = parse_arguments(cell)
    if expected is None:
        assert parsed == ParsedArguments("none", None, None)
    else:
        assert (parsed.status, parsed.form) == ("ok", "namespace"), parsed.error
        assert parsed.error is None
        assert strict(parsed.values) == strict(expected)
        assert parsed.values == expected


def test_seed_row_1_keeps_python_types():
    values = parse_arguments(seed_arguments_cells()[0]).values
    assert values["lr"] == 5e-05 and type(values["lr"]) is float
    assert values["batch_size"] == 8 and type(values["batch_size"]) is int
    assert values["criterion"] == "cross_entropy"


def test_seed_row_8_item_without_br_parses():
    cell = seed_arguments_cells()[7]
    assert "_equalization', scheduler='CosineAnnealingLR'" in cell
    values = parse_arguments(cell).values
    assert values["run_name"] == "label_smoothing_dual_loss_histogram_equalization"
    assert values["scheduler"] == "CosineAnnealingLR"


@pytest.mark.parametrize(
    "cell",
    [
        "batch_size=8, <br>lr=5e-05, <br>run_name='a b'",
        "batch_size=8, <br/>lr=5e-05, <br/>run_name='a b'",
        "batch_size=8, <br />lr=5e-05, <BR>run_name='a b'",
        "batch_size=8, lr=5e-05, run_name='a b'",
        "batch_size=8,lr=5e-05,run_name='a b'",
        "batch_size=8<br>, lr=5e-05 <br> ,<br>run_name='a b'",
        "batch_size=8, <br>lr=5e-05, <br>run_name='a b')",
        "Namespace(batch_size=8, lr=5e-05, run_name='a b')",
        "Namespace(batch_size=8, <br>lr=5e-05, <br>run_name='a b')",
        "Namespace(batch_size=8, lr=5e-05, run_name='a b'",
        '  batch_size = 8 ,\n lr=5e-05,\n\trun_name="a b"  \n',
        "<br>batch_size=8, lr=5e-05, run_name='a b',<br>",
        "run_name='a b', lr=5e-05, batch_size=8",
    ],
)
def test_log_variants_parse_to_the_same_dict(cell):
    parsed = parse_arguments(cell)
    assert (parsed.status, parsed.form) == ("ok", "namespace"), parsed.error
    assert strict(parsed.values) == strict({"batch_size": 8, "lr": 5e-05, "run_name": "a b"})


@pytest.mark.parametrize("cell", [None, "", "   ", "None", " None ", "<br>", "None<br/>"])
def test_no_arguments(cell):
    assert parse_arguments(cell) == ParsedArguments("none", None, None)


def test_empty_namespace_is_ok_and_empty():
    assert parse_arguments("Namespace()") == ParsedArguments("ok", {}, None, "namespace")


def test_values_are_python_literals():
    cell = (
        "a=[1, 2.5, 'x'], <br>b=(1, <br>2), <br>c={'k': [None, True]}, <br>d=-3, "
        "<br>e=\"it's\", <br>f='say \"hi\"', <br>g='back\\\\slash', <br>h=None, <br>i=1e-06"
    )
    parsed = parse_arguments(cell)
    assert parsed.status == "ok", parsed.error
    assert strict(parsed.values) == strict(
        {
            "a": [1, 2.5, "x"],
            "b": (1, 2),
            "c": {"k": [None, True]},
            "d": -3,
            "e": "it's",
            "f": 'say "hi"',
            "g": "back\\slash",
            "h": None,
            "i": 1e-06,
        }
    )


def test_br_and_commas_inside_a_string_belong_to_the_value():
    parsed = parse_arguments("note='a, <br>b=c)', <br>seed=1")
    assert parsed.values == {"note": "a, <br>b=c)", "seed": 1}


def test_br_inside_brackets_does_not_join_numbers():
    assert parse_arguments("sizes=[1,<br>2]").values == {"sizes": [1, 2]}
    # Not a literal, so only the loose form reads it, and it keeps the text.
    parsed = parse_arguments("sizes=[1<br>2]")
    assert parsed == ParsedArguments("loose", {"sizes": "[1<br>2]"}, None, "lines")


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("lr=0.1, bs 8", "as namespace: expected key=value at column 9"),
        ("lr=0.1, bs 8", "as lines: 'bs 8' is not key=value or key: value at column 9"),
        ("lr=0.1, <br>lr=0.2", "duplicate key 'lr' at column 13"),
        ("lr=, bs=8", "missing value for 'lr'"),
        ("run_name='abc, <br>lr=0.1", "unterminated string at column 10"),
        ("milestones=[10, 20, <br>lr=0.1", "unclosed '['"),
        ("milestones=[10, 20), lr=0.1", "expected ']', found ')'"),
        ("lr=0.1]", "expected ',' between items"),
        ("1lr=0.1", "'1lr' is not an identifier"),
        ("lr=0.1)) extra", "unexpected text after ')'"),
        ("lr=0.1) seed=1", "unexpected text after ')'"),
        # Not the namespace form at all: only the other forms' reasons are given.
        ("lr 0.1, bs 8", "no key=value, key: value, --flag or {...} in it"),
        ("=0.1", "as lines: '=0.1' is not key=value or key: value at column 1"),
        ("adam, lr=0.001", "as lines: 'adam' is not key=value or key: value at column 1"),
    ],
)
def test_malformed_cells_are_kept_unparsed_with_a_reason(cell, reason):
    parsed = parse_arguments(cell)
    assert parsed.status == "unparsed"
    assert parsed.values is None and parsed.form is None
    assert reason in parsed.error


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            "loss function=CrossEntropyLoss<br>optimizer=adam(lr=0.001)",
            {"loss_function": "CrossEntropyLoss", "optimizer": "adam(lr=0.001)"},
        ),
        ("optimizer=adam(lr=0.001)", {"optimizer": "adam(lr=0.001)"}),
        ("criterion=focal", {"criterion": "focal"}),
        ("x=__import__('os').system('true')", {"x": "__import__('os').system('true')"}),
        ("lr=0.1, ,bs=8", {"lr": 0.1, "bs": 8}),
        ("batch_size=8 <br>lr=0.1", {"batch_size": 8, "lr": 0.1}),
        ("lr=0.1 0.2", {"lr": "0.1 0.2"}),
        ("learning-rate=0.1", {"learning_rate": 0.1}),
        ("lr=0.1 # tuned by hand", {"lr": "0.1 # tuned by hand"}),
        ("lr=inf", {"lr": "inf"}),
    ],
)
def test_cells_the_namespace_form_refuses_are_read_as_loose_lines(cell, expected):
    """Values that are not literals stay text: nothing is evaluated, nothing is dropped."""
    assert parse_arguments(cell) == ParsedArguments("loose", expected, None, "lines")
    assert strict(parse_arguments(cell).values) == strict(expected)


def test_render_uses_the_log_style():
    text = render_arguments({"lr": 5e-05, "batch_size": 8, "model": "DeepLabV3"})
    assert text == "batch_size=8, <br>lr=5e-05, <br>model='DeepLabV3'"
    assert render_arguments({"a": 1, "b": True}, separator=", ") == "a=1, b=True"


def test_render_then_parse_round_trips_the_seed_rows():
    for expected in EXPECTED_ROWS:
        if expected is not None:
            parsed = parse_arguments(render_arguments(expected))
            assert strict(parsed.values) == strict(expected)


def test_render_empty_reads_back_as_no_arguments():
    assert render_arguments({}) == ""
    assert parse_arguments(render_arguments({})).status == "none"


@pytest.mark.parametrize(
    "values",
    [{"lr": float("nan")}, {"lr": float("inf")}, {"path": Path("x")}, {"bad-key": 1}, {1: 1}],
)
def test_render_refuses_what_it_could_not_read_back(values):
    with pytest.raises(ValueError):
        render_arguments(values)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0001", 0.0001),
        ("1e-4", 0.0001),
        ("8", 8),
        ("True", True),
        ("None", None),
        ("'focal'", "focal"),
        ("focal", "focal"),
        ("[1, 2]", [1, 2]),
        (" 42 ", 42),
        ("adam(lr=0.001)", "adam(lr=0.001)"),
        ("__import__('os')", "__import__('os')"),
        ("", ""),
    ],
)
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_module_imports_only_the_standard_library():
    code = (
        "import sys, ledger.core.args; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'pandas', 'sqlalchemy', 'typer', 'rich', 'numpy', 'hypothesis'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Property-based tests.

FRAGMENTS = [
    "lr", "batch_size", "_x", "=", " = ", ",", ", ", ", <br>", "<br>", "<br/>", "<br />", "'",
    '"', "\\", "(", ")", "[", "]", "{", "}", ":", "1", "5e-05", "-", "True", "None", "adam",
    "Namespace(", " ", "\n", "'''", "#", "é", "0x1F",
]
cell_like_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
)


@given(cell_like_text)
def test_parse_arguments_never_raises_and_only_finds_real_keys(text):
    parsed = parse_arguments(text)
    assert parsed.status in ("ok", "loose", "none", "unparsed")
    if parsed.form == "namespace":
        assert parsed.status == "ok"
        for key in parsed.values:
            assert key.isidentifier()
            assert re.search(re.escape(key) + r"\s*=", text)
    # The other forms' keys: tests/test_args_forms.py.
    if parsed.status in ("ok", "loose"):
        assert isinstance(parsed.values, dict) and parsed.error is None
    elif parsed.status == "unparsed":
        assert parsed.values is None and parsed.error
    else:
        assert parsed.values is None and parsed.error is None


identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
tricky_strings = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="ab '\",=<>/\\()[]\n", max_size=20),
    st.sampled_from(["<br>", "a, <br>b", "x=1", "it's", '"q"', "a', b='c", "<br/>", "\\'"]),
)
scalars = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    tricky_strings,
    st.booleans(),
    st.none(),
)
literal_values = st.one_of(scalars, st.lists(scalars, max_size=4))
argument_dicts = st.dictionaries(identifiers, literal_values, min_size=1, max_size=8)


@given(argument_dicts)
def test_render_then_parse_round_trips(values):
    parsed = parse_arguments(render_arguments(values))
    assert (parsed.status, parsed.form) == ("ok", "namespace")
    assert strict(parsed.values) == strict(values)
    # The same cell with its tags dropped or spelled otherwise; rendering with another
    # separator changes only the text between items, never a "<br>" inside a string.
    for separator in (", ", ",", ", <br/>", ",<br />", "<br>, ", "<br/>,", ",\n"):
        parsed = parse_arguments(render_arguments(values, separator=separator))
        assert parsed.status == "ok", (separator, parsed.error)
        assert strict(parsed.values) == strict(values)


@given(literal_values)
def test_parse_value_reads_back_a_repr(value):
    assert strict({"v": parse_value(repr(value))}) == strict({"v": value})


@given(cell_like_text)
def test_parse_value_is_the_literal_the_text_spells_or_the_text_itself(text):
    value = parse_value(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = ast.literal_eval(text.strip())
    except Exception:
        assert value is text  # not a literal: kept exactly as typed, nothing evaluated
    else:
        assert repr(value) == repr(expected)
