"""Read a GitHub-flavoured Markdown table out of a document and write the document back.

The experiment log is a Markdown file people also edit by hand and format with
Prettier. Import takes one table out of it; export must give back the same bytes
for everything it did not change: the text around the table, the header, the
alignment row, each row's line, the padding, the line endings and the final newline.

Two table styles are kept:

* aligned (what Prettier writes): every column padded to its widest cell, counted
  in display columns (Korean and other East Asian wide characters are two columns).
  A changed or added row re-pads the whole table, as Prettier would.
* anything else: lines that did not change are written back as they were; new or
  changed lines are written compactly, ``| a | b |``.

Cells are kept as Markdown source (``a \\| b``), not as plain text; convert with
:func:`escape_cell` and :func:`unescape_cell`.

Row lengths: a row with fewer cells than the header is padded with empty cells (GFM
does the same). A row with more cells raises :class:`MarkdownError`: GFM would drop
the extra cells, and in a log they are nearly always notes with an unescaped ``|``,
so dropping them would lose text silently.

A document may hold several tables (one per architecture, say): :func:`parse_log` takes
every table a test accepts, each with the nearest heading above it, and
:func:`render_log` writes them all back in place.

Not handled: tables inside block quotes or list items, setext (underlined) headings as a
table's section, and tables whose lines use mixed line endings (written back with the
header line's ending throughout).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ledger.core.cellsyntax import escape_cell, unescape_cell  # noqa: F401  (this module's API too)

__all__ = [
    "Document",
    "Log",
    "LogTable",
    "MarkdownError",
    "Table",
    "display_width",
    "escape_cell",
    "find_tables",
    "last_heading",
    "parse_document",
    "parse_log",
    "render_document",
    "render_log",
    "render_table",
    "split_row",
    "unescape_cell",
]


class MarkdownError(ValueError):
    """A Markdown document or table that cannot be read or written; the message is one line."""


@dataclass
class Table:
    """One table: raw cell source, plus what is needed to write it back unchanged.

    ``rows`` may be edited or appended to; rows without an entry in ``row_lines``
    (or with ``None``) are new and are written in the table's style.
    """

    headers: list[str]
    aligns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    row_lines: list[str | None] = field(default_factory=list)
    header_line: str | None = None
    align_line: str | None = None
    aligned: bool = True

    def append(self, cells: list[str]) -> None:
        """Add a row of cell source texts (see :func:`escape_cell`)."""
        self.rows.append(list(cells))
        self.row_lines.extend([None] * (len(self.rows) - 1 - len(self.row_lines)))
        self.row_lines.append(None)


@dataclass
class Document:
    """A Markdown document split around one table.

    ``final_newline`` is False only when the table's last line ends the file without
    a line ending; rendering then leaves it off too.
    """

    before: str
    table: Table
    after: str
    newline: str = "\n"
    final_newline: bool = True


@dataclass
class LogTable:
    """One table of a :class:`Log`, the nearest heading above it, and the text after it
    (up to the next table taken, or the end of the document)."""

    table: Table
    after: str
    section: str | None = None
    line: int = 0  # 1-based line of the header in the document read
    newline: str = "\n"
    final_newline: bool = True


@dataclass
class Log:
    """A Markdown document split around every table it was read for."""

    before: str
    tables: list[LogTable]


# --- cells -----------------------------------------------------------------------

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_PAD = " \t"


def split_row(line: str) -> list[str]:
    """The cells of one table line, padding stripped.

    Splits on pipes not preceded by a backslash (GFM treats ``\\|`` as part of the
    cell even inside code spans); the leading and trailing pipes are optional.
    """
    s = line.strip(_PAD)
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [cell.strip(_PAD) for cell in _UNESCAPED_PIPE.split(s)]


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font, as Prettier counts them for padding.

    East Asian Wide and Fullwidth characters count 2; combining marks, format and
    control characters count 0; everything else counts 1. An emoji sequence (ZWJ
    joins, skin tones, VS16 presentation) counts 2 as a whole.
    """
    if text.isascii() and text.isprintable():
        return len(text)
    width = 0
    last = 0  # width of the previous visible character
    joined = False
    for ch in text:
        cp = ord(ch)
        if joined:
            # The character after a zero-width joiner is drawn inside the emoji before it.
            joined = False
            continue
        if cp == 0x200D:
            joined = last == 2
            continue
        if cp == 0xFE0F:
            if last == 1:  # VS16 turns a text-style symbol such as U+2764 into a wide emoji
                width += 1
                last = 2
            continue
        if 0x1F3FB <= cp <= 0x1F3FF and last == 2:
            continue
        category = unicodedata.category(ch)
        if category in ("Mn", "Me", "Cf", "Cc", "Cs", "Zl", "Zp"):
            continue
        last = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        width += last
    return width


# --- scanning --------------------------------------------------------------------


class _Line(NamedTuple):
    offset: int
    text: str  # without its line ending
    end: str  # "\n", "\r\n", "\r" or "" for a last line without one


class _Found(NamedTuple):
    start: int
    end: int
    lineno: int  # 1-based, of the header line
    lines: list[_Line]
    heading: str | None  # the text of the nearest ATX heading above the table


_LINE = re.compile(r"([^\r\n]*)(\r\n|\r|\n|)")
_DELIMITER_CELL = re.compile(r":?-+:?")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_BLOCK_START = re.compile(
    r" {0,3}(?:"
    r">"  # block quote
    r"|#{1,6}(?:[ \t]|$)"  # ATX heading
    r"|(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)"  # list item
    r"|([-*_])(?:[ \t]*\1){2,}[ \t]*$"  # thematic break
    r"|`{3,}|~{3,}"  # code fence
    r")"
)


def _lines(text: str) -> list[_Line]:
    out = []
    pos = 1 if text.startswith("\ufeff") else 0  # a BOM belongs to `before`
    while pos < len(text):
        m = _LINE.match(text, pos)
        out.append(_Line(pos, m.group(1), m.group(2)))
        pos = m.end()
    return out


def _indent(line: str) -> int:
    cols = 0
    for ch in line:
        if ch == " ":
            cols += 1
        elif ch == "\t":
            cols += 4 - cols % 4
        else:
            break
    return cols


def _opens_fence(line: str) -> tuple[str, int] | None:
    m = _FENCE.fullmatch(line)
    if not m or (m.group(1)[0] == "`" and "`" in m.group(2)):
        return None
    return m.group(1)[0], len(m.group(1))


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    m = _FENCE.fullmatch(line)
    return bool(
        m
        and m.group(1)[0] == fence[0]
        and len(m.group(1)) >= fence[1]
        and not m.group(2).strip(_PAD)
    )


def _breaks_table(line: str) -> bool:
    return not line.strip(_PAD) or _indent(line) >= 4 or bool(_BLOCK_START.match(line))


def _delimiter_cells(line: str) -> list[str] | None:
    if "|" not in line or _indent(line) >= 4:
        return None
    cells = split_row(line)
    if all(_DELIMITER_CELL.fullmatch(c) for c in cells):
        return cells
    return None


def _scan(text: str) -> list[_Found]:
    lines = _lines(text)
    found: list[_Found] = []
    fence = None
    heading = None
    i = 0
    while i < len(lines):
        line = lines[i].text
        if fence:
            if _closes_fence(line, fence):
                fence = None
            i += 1
            continue
        fence = _opens_fence(line)
        if fence:
            i += 1
            continue
        if (match := _HEADING.fullmatch(line)) is not None:
            heading = (match.group(1) or "").strip(_PAD) or None
            i += 1
            continue
        if (
            i + 1 < len(lines)
            and not _breaks_table(line)
            and (aligns := _delimiter_cells(lines[i + 1].text)) is not None
            and len(aligns) == len(split_row(line))
        ):
            j = i + 2
            while j < len(lines) and not _breaks_table(lines[j].text):
                j += 1
            last = lines[j - 1]
            end = last.offset + len(last.text) + len(last.end)
            found.append(_Found(lines[i].offset, end, i + 1, lines[i:j], heading))
            i = j
            continue
        i += 1
    return found


def _build(found: _Found) -> Table:
    header_line, align_line = found.lines[0].text, found.lines[1].text
    headers = split_row(header_line)
    n = len(headers)
    rows, row_lines = [], []
    for k, line in enumerate(found.lines[2:]):
        cells = split_row(line.text)
        if len(cells) > n:
            raise MarkdownError(
                f"line {found.lineno + 2 + k}: table row has {len(cells)} cells but the header "
                f"has {n}; write a literal | inside a cell as \\|"
            )
        rows.append(cells + [""] * (n - len(cells)))
        row_lines.append(line.text)
    table = Table(headers, split_row(align_line), rows, row_lines, header_line, align_line)
    table.aligned = _aligned_lines(table) == [header_line, align_line, *row_lines]
    return table


def find_tables(text: str) -> list[tuple[int, int, Table]]:
    """Every GFM table in ``text`` outside fenced code blocks.

    Returns:
        ``(start, end, table)`` for each, where ``text[start:end]`` is the table's
        lines including the last line's ending.

    Raises:
        MarkdownError: a table has a row with more cells than its header.
    """
    return [(f.start, f.end, _build(f)) for f in _scan(text)]


def parse_document(
    text: str, accept: Callable[[list[str]], bool] = lambda headers: True
) -> Document:
    """Split ``text`` around its first table whose header cells ``accept`` approves.

    Args:
        text: the whole document, read with ``newline=""`` so line endings survive.
        accept: called with each table's header cells; other tables stay in
            ``before``/``after`` untouched (and are not checked).

    Raises:
        MarkdownError: no table, none accepted, or the chosen table is malformed.
    """
    found = _scan(text)
    if not found:
        raise MarkdownError(
            "no table found: expected a Markdown table (a header row, then a row like | --- | --- |)"
        )
    for f in found:
        if accept(split_row(f.lines[0].text)):
            return Document(
                before=text[: f.start],
                table=_build(f),
                after=text[f.end :],
                newline=f.lines[0].end,
                final_newline=bool(f.lines[-1].end),
            )
    first = " | ".join(split_row(found[0].lines[0].text))
    raise MarkdownError(
        f"no table with the expected columns: found {len(found)} table(s), the first has: {first}"
    )


def last_heading(text: str) -> str | None:
    """The text of the last ATX heading in ``text`` outside fenced code, as :func:`parse_log`
    takes a table's section."""
    heading, fence = None, None
    for line in _lines(text):
        if fence:
            if _closes_fence(line.text, fence):
                fence = None
        elif (fence := _opens_fence(line.text)) is None and (match := _HEADING.fullmatch(line.text)):
            heading = (match.group(1) or "").strip(_PAD) or None
    return heading


def parse_log(text: str, accept: Callable[[list[str]], bool] = lambda headers: True) -> Log:
    """Split ``text`` around every table whose header cells ``accept`` approves.

    Each table records the nearest ATX heading above it (``### Unet``) as its section;
    tables not accepted, like all other text, stay in the text between the tables,
    untouched and unchecked.

    Raises:
        MarkdownError: no table accepted, or an accepted table is malformed.
    """
    found = _scan(text)
    taken = [f for f in found if accept(split_row(f.lines[0].text))]
    if not taken:
        if not found:
            raise MarkdownError(
                "no table found: expected a Markdown table (a header row, then a row like | --- | --- |)"
            )
        first = " | ".join(split_row(found[0].lines[0].text))
        raise MarkdownError(
            f"no table with the expected columns: found {len(found)} table(s), the first has: {first}"
        )
    tables = []
    for k, f in enumerate(taken):
        stop = taken[k + 1].start if k + 1 < len(taken) else len(text)
        tables.append(LogTable(table=_build(f), after=text[f.end:stop], section=f.heading, line=f.lineno,
                               newline=f.lines[0].end, final_newline=bool(f.lines[-1].end)))
    return Log(before=text[: taken[0].start], tables=tables)


def render_log(log: Log) -> str:
    """The whole document, every table re-rendered in place."""
    out = [log.before]
    for part in log.tables:
        table = render_table(part.table, part.newline)
        if not part.final_newline:
            table = table[: -len(part.newline)]
        out += [table, part.after]
    return "".join(out)


# --- rendering -------------------------------------------------------------------


def _check(table: Table) -> tuple[list[str], list[str], list[list[str]]]:
    """Stripped headers, aligns and rows, after checking they make a valid table."""
    n = len(table.headers)
    if n == 0:
        raise MarkdownError("a table needs at least one column")
    aligns = [a.strip(_PAD) for a in table.aligns] or ["---"] * n
    if len(aligns) != n:
        raise MarkdownError(f"the table has {n} columns but {len(aligns)} alignment cells")
    for a in aligns:
        if not _DELIMITER_CELL.fullmatch(a):
            raise MarkdownError(f"not an alignment cell: {a!r} (expected ---, :--, --: or :-:)")
    headers = [h.strip(_PAD) for h in table.headers]
    rows = []
    for i, row in enumerate(table.rows, 1):
        if len(row) != n:
            raise MarkdownError(f"row {i} has {len(row)} cells but the table has {n} columns")
        rows.append([c.strip(_PAD) for c in row])
    for cell in [*headers, *(c for row in rows for c in row)]:
        if "\n" in cell or "\r" in cell or _UNESCAPED_PIPE.search(cell):
            raise MarkdownError(
                f"cell {cell[:40]!r} contains a line break or an unescaped |; pass it through escape_cell()"
            )
    return headers, aligns, rows


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _aligned_lines(table: Table) -> list[str]:
    headers, aligns, rows = _check(table)
    widths = [
        max(3, display_width(h), *(display_width(row[k]) for row in rows))
        for k, h in enumerate(headers)
    ]

    def pad(cell: str, k: int) -> str:
        spaces = widths[k] - display_width(cell)
        align = aligns[k]
        if align.endswith(":"):
            before = spaces // 2 if align.startswith(":") else spaces
        else:
            before = 0
        return " " * before + cell + " " * (spaces - before)

    delimiter = [
        (":" if a.startswith(":") else "-") + "-" * (w - 2) + (":" if a.endswith(":") else "-")
        for a, w in zip(aligns, widths)
    ]
    lines = [_line([pad(h, k) for k, h in enumerate(headers)]), _line(delimiter)]
    lines += [_line([pad(c, k) for k, c in enumerate(row)]) for row in rows]
    return lines


def _compact_lines(table: Table) -> list[str]:
    headers, aligns, rows = _check(table)
    n = len(headers)

    def kept(line: str | None, cells: list[str]) -> bool:
        if line is None:
            return False
        parsed = split_row(line)
        return len(parsed) <= n and parsed + [""] * (n - len(parsed)) == cells

    lines = [
        table.header_line if kept(table.header_line, headers) else _line(headers),
        table.align_line if kept(table.align_line, aligns) else _line(aligns),
    ]
    for i, row in enumerate(rows):
        original = table.row_lines[i] if i < len(table.row_lines) else None
        lines.append(original if kept(original, row) else _line(row))
    return lines


def render_table(table: Table, newline: str = "\n") -> str:
    """The table's lines, each ending with ``newline``.

    Raises:
        MarkdownError: rows of the wrong length, or a cell with a line break or an
            unescaped ``|``.
    """
    lines = _aligned_lines(table) if table.aligned else _compact_lines(table)
    return "".join(line + newline for line in lines)


def render_document(doc: Document) -> str:
    """The whole document, with the table re-rendered in place."""
    table = render_table(doc.table, doc.newline)
    if not doc.final_newline:
        table = table[: -len(doc.newline)]
    return doc.before + table + doc.after
