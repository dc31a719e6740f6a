"""Arguments cells other teams write: command-line flags, JSON and dict literals, loose lines.

The hard guarantee is that no key is invented: every key found is in the cell. A key found
outside the namespace form is written in the cell as a whole word, with each ``_`` of the key
standing for one ``_``, one ``-`` or one run of whitespace and every other character exactly
as found (case too). Every string value of the flags and lines forms is text of the cell.
"""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.args import ParsedArguments, parse_arguments, render_arguments

def strict(values):
    """A form that tells 1 from 1.0 from True and 0.0 from -0.0, key order aside."""
    return repr(sorted(values.items()))


def written_as(key):
    """The ways a cell may spell key: each `_` one `_`, `-` or run of whitespace, a whole word."""
    spelled = r"(?:_|-|\s+)".join(re.escape(part) for part in key.split("_"))
    return re.compile(rf"(?<!\w){spelled}(?!\w)")


def read(cell, status, form, values):
    parsed = parse_arguments(cell)
    assert parsed == ParsedArguments(status, values, None, form), parsed.error
    assert strict(parsed.values) == strict(values)


@pytest.mark.parametrize(
    ("cell", "values"),
    [
        ("--lr 0.001 --epochs 10", {"lr": 0.001, "epochs": 10}),
        ("--lr=1e-3 -b 8 --amp", {"lr": 0.001, "b": 8, "amp": True}),
        ("python train.py --epochs 10", {"epochs": 10}),
        ("CUDA_VISIBLE_DEVICES=0 python3 tools/train.py --lr 0.1", {"lr": 0.1}),
        ("--no-amp", {"no_amp": True}),
        ("--batch-size 8 --val_batch_size 4", {"batch_size": 8, "val_batch_size": 4}),
        ("--amp --lr 0.1", {"amp": True, "lr": 0.1}),
        ("--amp True --cutmix False --weights None", {"amp": True, "cutmix": False, "weights": None}),
        ("--name 'my run' --note=\"a, b\" --seed -1", {"name": "my run", "note": "a, b", "seed": -1}),
        (
            "--optimizer adam(lr=1e-4) --milestones [10,20]",
            {"optimizer": "adam(lr=1e-4)", "milestones": "[10,20]"},
        ),
        ("--tag=007 --lr inf --momentum .9", {"tag": "007", "lr": "inf", "momentum": 0.9}),
        ("-lr 0.01 -B 2 -b 3", {"lr": 0.01, "B": 2, "b": 3}),
        ("--lr 0.1 \\<br>--epochs 10", {"lr": 0.1, "epochs": 10}),
        ("python train.py<br>  --lr 0.1<br>  --epochs 10", {"lr": 0.1, "epochs": 10}),
        ("--model.backbone=resnet50", {"model.backbone": "resnet50"}),
        ("--name=", {"name": ""}),
        (
            "--img 512 --batch 16 --epochs 30 --hyp=hyp.scratch.yaml",
            {"img": 512, "batch": 16, "epochs": 30, "hyp": "hyp.scratch.yaml"},
        ),
        (
            "python train.py --img 1024 -b 4 --epochs 30 --multi-scale",
            {"img": 1024, "b": 4, "epochs": 30, "multi_scale": True},
        ),
    ],
)
def test_flags(cell, values):
    read(cell, "ok", "flags", values)


@pytest.mark.parametrize(
    ("cell", "form", "values"),
    [
        ('{"optimizer": "adam", "lr": 0.0003}', "json", {"optimizer": "adam", "lr": 0.0003}),
        ('{"lr": 0.001}', "json", {"lr": 0.001}),
        (
            '{<br>  "lr": 0.001,<br>  "amp": true,<br>  "resume": null<br>}',
            "json",
            {"lr": 0.001, "amp": True, "resume": None},
        ),
        (
            '{"milestones": [10, 20], "opt": {"name": "sgd"}}',
            "json",
            {"milestones": [10, 20], "opt": {"name": "sgd"}},
        ),
        ('{"batch size": 8, "weight-decay": 0.01}', "json", {"batch_size": 8, "weight_decay": 0.01}),
        ('{"note": "a<br>b", "path": "C:\\\\runs"}', "json", {"note": "a<br>b", "path": "C:\\runs"}),
        ("{}", "json", {}),
        ("{'lr': 1e-3}", "dict", {"lr": 0.001}),
        ("{'optimizer': 'adam', 'lr': 1e-4}", "dict", {"optimizer": "adam", "lr": 0.0001}),
        (
            "{'amp': True, 'sizes': (1, 2), 'resume': None}",
            "dict",
            {"amp": True, "sizes": (1, 2), "resume": None},
        ),
        ("{'lr': 0.1,<br> 'seed': 7}", "dict", {"lr": 0.1, "seed": 7}),
        (
            '{"optimizer": "sgd", "lr": 0.02, "momentum": 0.9}',
            "json",
            {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9},
        ),
        ('{"lr": 0.02, "momentum": 0.9, \'seed\': 1}', "dict", {"lr": 0.02, "momentum": 0.9, "seed": 1}),
    ],
)
def test_json_and_dict(cell, form, values):
    read(cell, "ok", form, values)


@pytest.mark.parametrize(
    ("cell", "values"),
    [
        (
            "loss function=CrossEntropyLoss<br>batch size=10<br>epoch : 10",
            {"loss_function": "CrossEntropyLoss", "batch_size": 10, "epoch": 10},
        ),
        (
            "optimizer: adamw(lr=1e-4, wd=0.01), epochs: 30",
            {"optimizer": "adamw(lr=1e-4, wd=0.01)", "epochs": 30},
        ),
        ("lr: 0.001; epochs: 10\nseed = 3", {"lr": 0.001, "epochs": 10, "seed": 3}),
        ("Loss Function = Dice, LR: 1e-4", {"Loss_Function": "Dice", "LR": 0.0001}),
        ("note: it's fine, lr: 1", {"note": "it's fine", "lr": 1}),
        ("note: 'a, b', seed: 1", {"note": "a, b", "seed": 1}),
        ("milestones: [10, 20], aug: {flip, rotate}", {"milestones": "[10, 20]", "aug": "{flip, rotate}"}),
        ("data: https://example.org/a, time: 12:30", {"data": "https://example.org/a", "time": "12:30"}),
        ("amp: true, resume: None, cutmix: False", {"amp": "true", "resume": None, "cutmix": False}),
        ("model.lr=0.1<br><br>model.name=unet", {"model.lr": 0.1, "model.name": "unet"}),
        ("a=b=c, url=x:y", {"a": "b=c", "url": "x:y"}),
        ("note: lr=0.1 --amp", {"note": "lr=0.1 --amp"}),
        ("epochs: 10, aug: flip -rot", {"epochs": 10, "aug": "flip -rot"}),
    ],
)
def test_loose_lines(cell, values):
    read(cell, "loose", "lines", values)


def test_namespace_still_comes_first():
    read("batch_size=8, <br>criterion='focal', <br>lr=5e-05", "ok", "namespace",
         {"batch_size": 8, "criterion": "focal", "lr": 5e-05})
    read("Namespace(lr=0.1, amp=True)", "ok", "namespace", {"lr": 0.1, "amp": True})


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("tried a bigger batch, it diverged", "no key=value, key: value, --flag or {...} in it"),
        ("see https://wandb.ai/team/run", "as lines: 'see https://wandb.ai/team/run' is not key=value"),
        ("C:\\runs\\best", "is not key=value or key: value"),
        ("lr:0.1, bs:8", "'lr:0.1' is not key=value or key: value"),  # ':' needs a space after it
        # One item that is not a pair leaves the cell unparsed: no half-read cells.
        ("lr: 0.1, and then it diverged", "'and then it diverged' is not key=value or key: value"),
        ("lr: 0.1, and then it diverged", "at column 10"),
        ("we tried one more thing: x", "is not key=value or key: value"),  # four words are no key
        ("Baseline. Next: try lr=0.1", "is not key=value or key: value"),
        ("optimizer:<br>  name: adam", "missing value for 'optimizer'"),
        ("lr: 'abc, seed: 1", "unterminated string"),
        ("note: see (above, seed: 1", "unclosed '('"),
        ("note: x), seed: 1", "unexpected ')'"),
        ("batch size=8, batch-size=16", "as lines: duplicate key 'batch_size' at column 15"),
        ("--gpus 0 1", "as flags: '1' is neither a flag nor a flag's value at column 10"),
        ("tried -b 8 and it diverged", "'and' is neither a flag nor a flag's value"),
        ("--lr 0.1 --lr 0.2", "as flags: duplicate key 'lr' at column 10"),
        ("--batch-size 8 --batch_size 16", "duplicate key 'batch_size'"),
        ("epochs: 10, then --amp", "as flags: 'epochs:' before the first flag is not a command at column 1"),
        ("--name 'my run", "as flags: unterminated string"),
        ('{"lr": 0.1, "lr": 0.2}', "as JSON or dict: duplicate key 'lr'"),
        ('{"lr": NaN}', "NaN is not a number JSON stores"),
        ('{"lr": 1e999}', "value of 'lr' is not JSON data"),
        ("{'a': {1, 2}}", "value of 'a' is not JSON data: {1, 2}"),
        ("{'a': b'x'}", "value of 'a' is not JSON data"),
        ("{'a': adam(lr=1)}", "value of 'a' is not a Python literal"),
        ("{1: 2}", "key 1 is not a name"),
        ('{"": 2}', "key '' is not a name"),
        ('{"learning rate decay factor": 0.1}', "is not a name"),
        ('{"a\\u0062": 1}', "key 'ab' is written with escapes"),
        ("{**base, 'lr': 1}", "a key is not a string"),
        ("{'lr': 1", "neither JSON (Expecting property name enclosed in double quotes) nor a Python dict"),
        ("[1, 2]", "no key=value, key: value, --flag or {...} in it"),
    ],
)
def test_cells_that_stay_unparsed(cell, reason):
    parsed = parse_arguments(cell)
    assert (parsed.status, parsed.values, parsed.form) == ("unparsed", None, None)
    assert reason in parsed.error


@pytest.mark.parametrize(
    "cell",
    [
        "{" * 100_000,
        "{" * 50_000 + "}" * 50_000,
        "[" * 100_000,
        "(" * 100_000,
        "'" * 100_001,
        "--a " * 20_000 + "x y",
    ],
)
def test_pathological_cells_do_not_raise(cell):
    assert parse_arguments(cell).status == "unparsed"


def test_deep_json_is_read_or_refused_without_raising():
    def nested(depth):
        return '{"a": ' + "[" * depth + "]" * depth + "}"

    assert parse_arguments(nested(100)).form == "json"
    # Near the recursion limit the outcome depends on the caller's stack; it never raises.
    assert parse_arguments(nested(990)).status in ("ok", "unparsed")
    assert parse_arguments(nested(5000)).status == "unparsed"


# Property-based tests.

FRAGMENTS = [
    "lr", "batch size", "Batch-Size", "_x", "é", "ß", "数", "=", " = ", ":", ": ", " : ", "://", ",",
    ", ", ";", "<br>", "<br/>", "<BR />", "\n", " ", "\t", "--", "-", "--lr", "-b", "--no-amp", "'",
    '"', "\\", "(", ")", "[", "]", "{", "}", "1", "-1", "5e-05", ".5", "007", "True", "None", "inf",
    "adam", "Namespace(", "python", "train.py", "CUDA=0", "#", '"lr"', "'lr'", "\\u0041", "it's",
]
short_text = st.text(max_size=8)
names = st.one_of(
    short_text,
    st.from_regex(r"[A-Za-z_ \t-]{1,8}", fullmatch=True),
    st.sampled_from(["lr", "batch size", "a-b", "A", "é", "a\u2028b", "a\\b", "x.", "1x"]),
)
# Cells shaped like each form but with arbitrary names and values in them.
near_misses = st.one_of(
    st.dictionaries(names, short_text | st.integers(), max_size=4).map(json.dumps),
    st.dictionaries(names, short_text, max_size=4).map(lambda d: json.dumps(d, ensure_ascii=False)),
    st.dictionaries(names, short_text | st.booleans(), max_size=4).map(repr),
    st.lists(st.tuples(names, st.sampled_from(["=", ": ", " : ", ":"]), short_text), max_size=4).map(
        lambda items: "<br>".join("".join(item) for item in items)
    ),
    st.lists(st.tuples(st.sampled_from(["--", "-"]), names, st.sampled_from([" ", "="]), short_text),
             max_size=4).map(lambda items: " ".join("".join(item) for item in items)),
)
cell_like_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=20).map("".join),
    near_misses,
)


@given(cell_like_text)
def test_every_key_and_string_value_found_is_in_the_cell(text):
    parsed = parse_arguments(text)
    assert (parsed.status, parsed.form) in {
        ("ok", "namespace"), ("ok", "json"), ("ok", "dict"), ("ok", "flags"), ("loose", "lines"),
        ("none", None), ("unparsed", None),
    }
    assert (parsed.values is not None) == (parsed.status in ("ok", "loose"))
    assert (parsed.error is not None) == (parsed.status == "unparsed")
    for key, value in (parsed.values or {}).items():
        assert written_as(key).search(text), key
        if parsed.form in ("flags", "lines") and isinstance(value, str):
            assert value in text, (key, value)
    if parsed.form not in (None, "namespace"):
        json.dumps(parsed.values, allow_nan=False)  # the ledger stores them as JSON


# Round trips: well-formed cells of each form read back to exactly what was written.

words = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,5}", fullmatch=True)
keys = st.lists(words, min_size=1, max_size=3).map("_".join)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
numbers = st.one_of(st.integers(-(10**18), 10**18), st.floats(allow_nan=False, allow_infinity=False))
# Strings a cell can hold quoted with no escapes, separators and brackets included.
quotable = st.text(alphabet="abcXYZ019 ._/+-,;:=()[]{}<>é数\t", max_size=12)
BARE = re.compile(r"[A-Za-z][A-Za-z0-9_./]*")  # text the flags and lines forms keep as written
bare_words = st.from_regex(BARE.pattern[:-1] + "{0,10}", fullmatch=True).filter(
    lambda word: word not in ("True", "False", "None")
)


def may_go_bare(value):
    return bool(BARE.fullmatch(value)) and value not in ("True", "False", "None")


@st.composite
def scalar_items(draw, min_size=1):
    """{key: value} with the text each value is written as in the flags and lines forms."""
    values = draw(st.dictionaries(keys, st.one_of(numbers, st.booleans(), st.none(), quotable, bare_words),
                                  min_size=min_size, max_size=6))
    written = {}
    for key, value in values.items():
        if not isinstance(value, str):
            written[key] = repr(value)
        elif may_go_bare(value) and draw(st.booleans()):
            written[key] = value
        else:
            quote = draw(st.sampled_from("'\""))
            written[key] = quote + value + quote
    return values, written


@given(scalar_items(), st.data())
def test_flags_round_trip(items, data):
    values, written = items
    commands = ["", "python train.py", "CUDA_VISIBLE_DEVICES=0 python3 tools/train.py"]
    argv = [data.draw(st.sampled_from(commands))]
    for key, value in values.items():
        name = data.draw(st.sampled_from(["--", "-"])) + key.replace("_", data.draw(st.sampled_from("-_")))
        if value is True and data.draw(st.booleans()):
            argv.append(name)
        elif data.draw(st.booleans()):
            argv.append(f"{name}={written[key]}")
        else:
            argv += [name, written[key]]
    between = data.draw(st.sampled_from([" ", "  ", "<br>", " \\<br>", "\n"]))
    cell = between.join(word for word in argv if word)
    read(cell, "ok", "flags", values)


@given(scalar_items(), st.data())
def test_loose_lines_round_trip(items, data):
    values, written = items
    lines, joiners, namespace_like = [], [], True
    for key, value in values.items():
        spelled = key.replace("_", data.draw(st.sampled_from([" ", "-", "_"])))
        separator = data.draw(st.sampled_from(["=", " = ", ": ", " : ", ":\t"]))
        lines.append(f"{spelled}{separator}{written[key]}")
        is_literal = not isinstance(value, str) or written[key] != value
        namespace_like &= spelled == key and "=" in separator and is_literal
    joiners = [data.draw(st.sampled_from(["<br>", ", ", "; ", "\n", ",<br>", "<br/>"])) for _ in lines[1:]]
    cell = lines[0] + "".join(joiner + line for joiner, line in zip(joiners, lines[1:]))
    # A cell that happens to be in the namespace form is read as one, with the same values.
    if namespace_like and all("," in joiner for joiner in joiners):
        read(cell, "ok", "namespace", values)
    else:
        read(cell, "loose", "lines", values)


json_values = st.recursive(
    st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=10)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@given(st.dictionaries(keys, json_values, max_size=6), st.data())
def test_json_round_trip(values, data):
    spellings = st.sampled_from([" ", "-", "_"])
    spelled = {key.replace("_", data.draw(spellings)): value for key, value in values.items()}
    text = json.dumps(spelled, indent=data.draw(st.sampled_from([None, 2])))
    cell = text.replace("\n", data.draw(st.sampled_from(["<br>", "<br/>", "\n", " "])))
    read(cell, "ok", "json", values)


python_values = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=10),
                          st.lists(numbers | st.text(max_size=4), max_size=3).map(tuple))


@given(st.dictionaries(keys, python_values, min_size=1, max_size=6), st.data())
def test_dict_round_trip(values, data):
    joiner = data.draw(st.sampled_from([", ", ",<br>", ", <br>", ",\n"]))
    items = [f"{key.replace('_', data.draw(st.sampled_from([' ', '-', '_'])))!r}: {value!r}"
             for key, value in values.items()]
    read("{" + joiner.join(items) + "}", "ok", "dict", values)


@given(st.dictionaries(identifiers, python_values, min_size=1, max_size=6), st.booleans())
def test_namespace_round_trip(values, wrapped):
    cell = render_arguments(values)
    read(f"Namespace({cell})" if wrapped else cell, "ok", "namespace", values)
