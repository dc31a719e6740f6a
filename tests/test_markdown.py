from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.markdown import (
    MarkdownError,
    Table,
    display_width,
    escape_cell,
    find_tables,
    parse_document,
    render_document,
    render_table,
    split_row,
    unescape_cell,
)

SEED = Path(__file__).parent / "data" / "experiments.md"
SEED_HEADERS = ["Date", "Run Name", "Model Name", "Arguments", "WanDB Link", "ETC"]


def seed_text() -> str:
    with open(SEED, encoding="utf-8", newline="") as f:
        return f.read()


def is_experiment_table(headers: list[str]) -> bool:
    return "Run Name" in headers


def table_lines(doc_text: str) -> list[str]:
    (start, end, _), = find_tables(doc_text)
    return doc_text[start:end].splitlines()


def test_seed_round_trips_byte_exact():
    doc = parse_document(seed_text(), is_experiment_table)
    assert render_document(doc).encode("utf-8") == SEED.read_bytes()


def test_seed_is_detected_as_aligned_table():
    doc = parse_document(seed_text())
    assert doc.table.aligned
    assert doc.table.headers == SEED_HEADERS
    assert len(doc.table.rows) == 10
    assert all(len(row) == 6 for row in doc.table.rows)
    assert doc.table.rows[-1][1] == "Ensemble"
    assert doc.before.startswith("# 한사랑개발회") and doc.before.endswith("Segmentation\n\n")
    assert doc.after == ""
    assert doc.newline == "\n"


def test_appended_row_repads_every_column_prettier_style():
    original = seed_text()
    doc = parse_document(original)
    old_rows = [list(r) for r in doc.table.rows]
    long_name = "deeplabv3plus_effb4_dual_loss_with_very_long_run_name_2021"
    doc.table.append(
        [
            "2021-05-06",
            long_name,
            "DeepLabV3+",
            escape_cell("batch_size=8, lr=0.0001"),
            "None",
            escape_cell("한국어 메모: 성능 향상"),
        ]
    )
    text = render_document(doc)

    assert text.startswith(doc.before) and text.endswith("|\n")
    lines = table_lines(text)
    assert len(lines) == 2 + 11
    # Prettier pads by display width: every line is the same number of columns wide,
    # and the Run Name column grew to fit the new name on every line.
    assert len({display_width(line) for line in lines}) == 1
    old_lines = original.splitlines()[4:]
    assert all(new.split(" | ")[1] != old.split(" | ")[1] for new, old in zip(lines, old_lines))
    assert lines[1].split(" | ")[1] == "-" * len(long_name)

    again = parse_document(text)
    assert again.table.aligned
    assert again.table.rows[:10] == old_rows
    assert again.table.rows[10][1] == long_name
    assert unescape_cell(again.table.rows[10][5]) == "한국어 메모: 성능 향상"
    assert render_document(again) == text


def test_pipe_in_cell_is_escaped_and_keeps_the_cell_count():
    doc = parse_document(seed_text())
    doc.table.append(["2021-05-07", "pipes", "X", "a=1", "None", escape_cell("loss | mIoU | 0.6")])
    text = render_document(doc)
    assert "loss \\| mIoU \\| 0.6" in text

    row = parse_document(text).table.rows[-1]
    assert len(row) == 6
    assert unescape_cell(row[5]) == "loss | mIoU | 0.6"


def test_render_refuses_a_cell_that_would_break_the_table():
    table = Table(["a", "b"], ["---", "---"], [["x | y", "z"]])
    with pytest.raises(MarkdownError, match="escape_cell"):
        render_table(table)
    with pytest.raises(MarkdownError, match="2 columns"):
        render_table(Table(["a", "b"], ["---", "---"], [["only one"]]))


@pytest.mark.parametrize(
    ("text", "width"),
    [
        ("", 0),
        ("abc", 3),
        ("실험", 4),
        ("lb mIoU : 0.6 달성", 18),
        ("ｆｕｌｌ", 8),  # fullwidth Latin
        ("e\u0301", 1),  # combining acute accent
        ("a\u200bb", 2),  # zero-width space
        ("🔥", 2),
        ("👍🏽", 2),
        ("👨\u200d👩\u200d👧", 2),
    ],
)
def test_display_width(text, width):
    assert display_width(text) == width


def test_prettier_padding_for_right_and_centre_alignment():
    table = Table(["n", "name", "note"], ["--:", ":-:", ":--"], [["1", "abc", "실험"]])
    assert render_table(table) == (
        "|   n | name | note |\n"
        "| --: | :--: | :--- |\n"
        "|   1 | abc  | 실험 |\n"
    )


COMPACT = (
    "Intro text.\n"
    "\n"
    "|Date|Run Name|Notes|\n"
    "|:-|-|-:|\n"
    "| 2021-05-01 | a |   spaced   |\n"
    "2021-05-02 | b | no outer pipes\n"
    "| 2021-05-03 | short |\n"
    "\n"
    "Outro.\n"
)


def test_unaligned_table_round_trips_and_only_new_rows_are_rewritten():
    doc = parse_document(COMPACT)
    assert not doc.table.aligned
    assert doc.table.rows[1] == ["2021-05-02", "b", "no outer pipes"]
    assert doc.table.rows[2] == ["2021-05-03", "short", ""]  # short rows are padded
    assert render_document(doc) == COMPACT

    doc.table.rows[0][2] = "edited"
    doc.table.append(["2021-05-04", "c", escape_cell("x|y")])
    text = render_document(doc)
    assert text == COMPACT.replace(
        "| 2021-05-01 | a |   spaced   |", "| 2021-05-01 | a | edited |"
    ).replace(
        "| 2021-05-03 | short |\n", "| 2021-05-03 | short |\n| 2021-05-04 | c | x\\|y |\n"
    )


def test_crlf_file_round_trips_and_new_rows_use_crlf():
    crlf = seed_text().replace("\n", "\r\n")
    doc = parse_document(crlf)
    assert doc.newline == "\r\n" and doc.table.aligned
    assert render_document(doc) == crlf

    doc.table.append(["2021-05-06", "crlf", "X", "None", "None", "None"])
    text = render_document(doc)
    assert "\n" not in text.replace("\r\n", "")
    assert text.endswith("|\r\n")


def test_file_without_final_newline_round_trips_without_one():
    text = seed_text().rstrip("\n")
    doc = parse_document(text)
    assert not doc.final_newline
    assert render_document(doc) == text

    doc.table.append(["2021-05-06", "last", "X", "None", "None", "None"])
    out = render_document(doc)
    assert out.endswith(" |") and out.count("\n") == text.count("\n") + 1


def test_accept_picks_the_experiment_table_past_another_table():
    other = "# Team\n\nSome text | with a pipe.\n\n| Name | Role |\n| ---- | ---- |\n| 허재섭 | 팀원 |\n\n"
    text = other + seed_text().split("\n", 4)[4] + "\nTrailing notes.\n"
    doc = parse_document(text, is_experiment_table)
    assert doc.table.headers == SEED_HEADERS
    assert doc.before == other
    assert doc.after == "\nTrailing notes.\n"
    assert render_document(doc) == text
    assert parse_document(text).table.headers == ["Name", "Role"]


def test_table_in_code_fence_is_ignored():
    fenced = "```markdown\n| Run Name | x |\n| --- | --- |\n| fake | 1 |\n```\n\n"
    with pytest.raises(MarkdownError, match="no table"):
        parse_document(fenced)
    text = fenced + "| Run Name | x |\n| --- | --- |\n| real | 2 |\n"
    doc = parse_document(text)
    assert doc.table.rows == [["real", "2"]]
    assert doc.before == fenced
    assert [t.rows for _, _, t in find_tables("~~~~\n" + text)] == []  # unclosed fence


def test_document_without_matching_table_raises_one_line_error():
    with pytest.raises(MarkdownError, match="no table found"):
        parse_document("# Just a heading\n\nA paragraph | with pipes.\n---\n")
    with pytest.raises(MarkdownError, match="expected columns") as err:
        parse_document("| a | b |\n| - | - |\n", is_experiment_table)
    assert "\n" not in str(err.value)


def test_row_with_too_many_cells_is_an_error_naming_the_line():
    text = "x\n\n| a | b |\n| - | - |\n| 1 | 2 |\n| 1 | 2 | stray |\n"
    with pytest.raises(MarkdownError, match=r"line 6: .*3 cells"):
        parse_document(text)


def test_table_ends_at_blank_line_or_new_block():
    text = "| a | b |\n| - | - |\n| 1 | 2 |\nno pipes\n> quote\n| 3 | 4 |\n"
    (start, end, table), = find_tables(text)
    assert (start, text[end:]) == (0, "> quote\n| 3 | 4 |\n")
    assert table.rows == [["1", "2"], ["no pipes", ""]]


def test_split_row():
    assert split_row("| a | b \\| c |") == ["a", "b \\| c"]
    assert split_row("a|b") == ["a", "b"]
    assert split_row("|  | x |") == ["", "x"]
    assert split_row("| ends with escaped \\|") == ["ends with escaped \\|"]


def test_escape_cell():
    assert escape_cell("a | b") == "a \\| b"
    assert escape_cell("line1\nline2\r\nline3") == "line1<br>line2<br>line3"
    assert unescape_cell("a \\| b<br>c") == "a | b<br>c"


cell_text = st.text(
    alphabet=st.sampled_from(list("aZ0 -:|\\<>`*한글실험\u0301") + ["🔥"]), max_size=12
).map(lambda s: s.strip(" "))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(cell_text, min_size=3, max_size=3), max_size=4), aligned=st.booleans())
def test_cells_survive_render_and_parse(rows, aligned):
    for row in rows:
        for text in row:
            assert unescape_cell(escape_cell(text)) == text
    table = Table(["a", "b", "c"], ["---", ":-:", "--:"], aligned=aligned)
    for row in rows:
        table.append([escape_cell(t) for t in row])
    text = "before\n\n" + render_table(table) + "\nafter\n"
    doc = parse_document(text)
    assert [[unescape_cell(c) for c in row] for row in doc.table.rows] == rows
    assert render_document(doc) == text
    if aligned:
        assert doc.table.aligned


def test_only_a_url_is_exported_as_a_wandb_link():
    from types import SimpleNamespace

    from ledger.core.cells import render_cell

    online = SimpleNamespace(links=["https://wandb.ai/team/seg/runs/abc"])
    offline = SimpleNamespace(links=["/home/me/reproductions/x/wandb/offline-run-20261201_101010-abc"])
    assert render_cell("links", online) == "[WanDB_link](https://wandb.ai/team/seg/runs/abc)"
    assert render_cell("links", offline) == "W&B offline run", "a local folder is not written into the team's log"
