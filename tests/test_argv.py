"""A recorded command's arguments read as typed values, and `--set` rewriting them."""

from __future__ import annotations

import pytest

from ledger.core.argv import parse_argv, set_argument, typed


def test_argparse_style_options_are_typed():
    argv = ["python", "train.py", "--lr", "1e-4", "--epochs=10", "--batch-size", "8", "--amp", "--name", "a b",
            "--offset", "-3", "--verbose"]
    assert parse_argv(argv) == {"lr": 1e-4, "epochs": 10, "batch_size": 8, "amp": True, "name": "a b",
                                "offset": -3, "verbose": True}


def test_hydra_style_and_the_interpreter_are_told_apart():
    argv = ["python3", "-u", "-W", "ignore", "train.py", "model.depth=4", "+trainer.fast=true", "optim=adam",
            "data/path"]
    assert parse_argv(argv) == {"model.depth": 4, "trainer.fast": True, "optim": "adam"}
    assert parse_argv(["python", "-m", "pkg.train", "--seed", "7"]) == {"seed": 7}
    assert parse_argv(["./run.sh", "--seed", "7", "--", "x=1"]) == {"seed": 7, "x": 1}


def test_a_repeated_option_keeps_the_last_value_as_argparse_does():
    assert parse_argv(["train", "--lr", "1", "--lr", "2"]) == {"lr": 2}


@pytest.mark.parametrize("text,value", [("3", 3), ("-3", -3), ("0.5", 0.5), ("1e-4", 1e-4), ("True", True),
                                        ("false", False), ("None", None), ("nan", "nan"), ("adam", "adam"),
                                        ("__import__('os')", "__import__('os')")])
def test_values_are_typed_from_their_text_alone(text, value):
    assert typed(text) == value and type(typed(text)) is type(value)


def test_set_rewrites_an_argument_in_the_style_it_was_written():
    argv = ["python", "train.py", "--lr", "1e-4", "--epochs=10", "model.depth=4", "--amp"]
    assert set_argument(argv, "lr", "2e-4")[2:4] == ["--lr", "2e-4"]
    assert set_argument(argv, "epochs", "3")[4] == "--epochs=3"
    assert set_argument(argv, "model.depth", "8")[5] == "model.depth=8"
    assert set_argument(argv, "seed", "1")[-2:] == ["--seed", "1"]
    with pytest.raises(ValueError, match="flag"):
        set_argument(argv, "amp", "0")
    assert set_argument(["python", "-W", "ignore", "t.py"], "W", "x")[-2:] == ["--W", "x"], "not the interpreter's"
