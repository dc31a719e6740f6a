"""A Markdown table cell's text as written and as meant: the two escapes a cell needs.

Apart from `ledger.core.markdown` so that code reading cells (`ledger.core.cells`, which
`ledger show` loads) does not load the document parser.
"""

from __future__ import annotations


def escape_cell(text: str) -> str:
    """Plain text to cell source: ``|`` becomes ``\\|``, a line break becomes ``<br>``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("|", "\\|").replace("\n", "<br>")


def unescape_cell(cell: str) -> str:
    """Cell source to plain text: ``\\|`` becomes ``|``; ``<br>`` is left as written."""
    return cell.replace("\\|", "|")
