"""A command line's arguments as typed values, and back.

`ledger run -- python train.py --lr 1e-4 --epochs=10 --amp model.depth=4` records the
argv exactly; these functions read the script's own arguments out of it so that
`list --where`, `compare` and `history` can use them:

- argparse style: `--key value`, `--key=value`, `-k value`; a `--flag` followed by
  another option, or by nothing, is `True`; a key given twice keeps the last value, as
  argparse does;
- Hydra / key=value style: `key=value`, `+key=value`, `nested.key=value`;
- everything else (the interpreter, the script, positional words) is not an argument.

Values are typed from their text alone: integers, floats (`1e-4`, `nan` stays text),
`true`/`false`, `none`/`null`; anything else stays a string. Nothing is ever evaluated.
Standard library only.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_HYDRA = re.compile(r"\+{0,2}([A-Za-z_][\w.\-/]*)=(.*)", re.DOTALL)
_OPTION = re.compile(r"--?([A-Za-z_][\w.\-]*)(?:=(.*))?", re.DOTALL)


def typed(text: str) -> Any:
    """The value a command-line word stands for: int, float, bool, None or the text itself."""
    if _INT.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def _is_value(word: str) -> bool:
    """Whether a word after an option is that option's value (not the next option)."""
    return not word.startswith("-") or bool(_NUMBER.fullmatch(word))


def key_of(option: str) -> str:
    """`--batch-size` -> `batch_size`, as argparse names its destination."""
    return option.replace("-", "_")


def script_start(argv: Sequence[str]) -> int:
    """Where the script's own arguments begin: after the program, and for a Python
    interpreter after its options and the script or `-m module` (`python -u train.py`)."""
    if not argv:
        return 0
    program = argv[0].rsplit("/", 1)[-1]
    if not re.fullmatch(r"python[\d.]*(\.exe)?", program):
        return 1
    i = 1
    while i < len(argv):
        word = argv[i]
        if word in ("-m", "-c"):
            return i + 2
        if word.startswith("-") and word != "-":
            i += 1 + (word in ("-W", "-X"))  # the interpreter options that take a value
            continue
        return i + 1  # the script
    return i


def parse_argv(argv: Sequence[str]) -> dict[str, Any]:
    """The script arguments of a command line, typed, keyed as the script sees them."""
    args: dict[str, Any] = {}
    words = list(argv)
    i = script_start(words)
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            continue
        option = _OPTION.fullmatch(word)
        if option and not _NUMBER.fullmatch(word):
            key = key_of(option.group(1))
            if option.group(2) is not None:
                args[key] = typed(option.group(2))
            elif i < len(words) and _is_value(words[i]) and not _HYDRA.fullmatch(words[i]):
                args[key] = typed(words[i])
                i += 1
            else:
                args[key] = True
            continue
        hydra = _HYDRA.fullmatch(word)
        if hydra:
            args[hydra.group(1)] = typed(hydra.group(2))
    return args


def set_argument(argv: Sequence[str], key: str, value: str) -> list[str]:
    """`argv` with the argument `key` given `value` (`--set key=value` on a command row).

    The last occurrence is replaced in the style it was written in (`--key v`, `--key=v`,
    `key=v`); a key the command does not have is appended as `--key value`.

    Raises:
        ValueError: `key` is a flag (`--amp` with no value): it cannot take a value.
    """
    words = list(argv)
    for i in range(len(words) - 1, script_start(words) - 1, -1):
        word = words[i]
        option = _OPTION.fullmatch(word)
        if option and not _NUMBER.fullmatch(word) and key_of(option.group(1)) == key:
            if option.group(2) is not None:
                words[i] = f"{word.split('=', 1)[0]}={value}"
            elif i + 1 < len(words) and _is_value(words[i + 1]) and not _HYDRA.fullmatch(words[i + 1]):
                words[i + 1] = value
            else:
                raise ValueError(f"--set {key}={value}: {word} is a flag in this command, it takes no value")
            return words
        hydra = _HYDRA.fullmatch(word)
        if hydra and not option and hydra.group(1) == key:
            words[i] = f"{word.split('=', 1)[0]}={value}"
            return words
    return words + [f"--{key}", value]
