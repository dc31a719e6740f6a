"""What a table row means: columns by role, and a row's cells to and from a run's fields.

A header is mapped to a role by name (`WanDB Link`, `W&B` and `wandb` are all `links`);
headers with no role are kept verbatim in the run's `cells` and written back on export.

A column whose header names a metric (`mIoU(latest)`, `val mIoU`, `Dice`, `LB score(mAP50)`)
has the role "score": each cell is a metric of the run, named after the header
(:func:`metric_name`: `mIoU(latest)` -> `miou_latest`), a number or None when the cell says
no number (`no submission`, `-`, `N/A`); the cell text itself is kept for export. The first
leaderboard column the seed log's names recognise (`LB score`, `lb`, `score`) is also the
run's `lb_miou`, as before.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from ledger.core.cellsyntax import escape_cell, unescape_cell
from ledger.core.errors import LedgerError

_ALIASES = {
    "date": {"date", "day", "날짜", "일자"},
    "name": {"runname", "run", "name", "experiment", "experimentname", "실험명"},
    "model": {"modelname", "model", "architecture", "arch", "모델"},
    "args": {"arguments", "args", "argument", "params", "parameters", "hyperparameters", "config"},
    "links": {"wandblink", "wandb", "wandblinks", "w&b", "w&blink", "wblink", "link", "links", "url"},
    "notes": {"etc", "notes", "note", "memo", "comment", "comments", "description", "remarks", "비고"},
    "lb": {"lbscore", "lbmiou", "lb", "leaderboard", "leaderboardscore", "publiclb", "score"},
}
_ROLE_OF = {alias: role for role, aliases in _ALIASES.items() for alias in aliases}

# Words that make a header a metric column: `mIoU(latest)`, `Last bbox mAP50(val)`, `Dice`.
_METRIC_WORDS = {
    "miou", "iou", "dice", "map", "map50", "map75", "map5095", "ap", "ap50", "acc", "accuracy", "top1", "top5",
    "f1", "auc", "auroc", "precision", "recall", "loss", "score", "lb", "rmse", "mae", "mse", "bleu", "psnr",
    "ssim", "wer", "cer", "fid",
}
_LEADERBOARD_WORDS = {"lb", "leaderboard", "public", "private", "kaggle"}
_HEADER_WORD = re.compile(r"[a-z0-9]+")
_ENCODER_HEADERS = {"encoder", "encodername", "backbone", "backbonename", "encoders"}

# Markdown-side spelling of "no value", as the seed log writes it.
NONE_CELL = "None"
DEFAULT_HEADERS = ["Date", "Run Name", "Model Name", "Arguments", "WanDB Link", "ETC"]
DEFAULT_LINK_LABEL = "WanDB_link"

_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_BARE_URL = re.compile(r"(?<![(\[])\bhttps?://[^\s<>|)\]]+")
# "lb mIoU : 0.6293", "LB score 0.61", "lb=0.6"; "best LB score" (no number) does not match.
_LB = re.compile(r"\blb\s*(?:m\s*iou|score)?\s*[:=]?\s*(\d+(?:\.\d+)?|\.\d+)", re.IGNORECASE)


MAX_NAME = 255  # the runs.name column
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(name: str, what: str = "a run name") -> str:
    """`name` if it can name a run: not empty, no path separator, no control character or
    line break (it becomes a folder name and a cell of the log), at most 255 characters."""
    if not name or not name.strip():
        raise LedgerError(f"{what} cannot be empty")
    if name != name.strip():
        raise LedgerError(f"{what} cannot start or end with spaces: {name!r}")
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        raise LedgerError(f"{what} cannot contain {bad.group(0)!r} (no path separators or control characters): "
                          f"{name!r}")
    if len(name) > MAX_NAME:
        raise LedgerError(f"{what} is {len(name)} characters long; at most {MAX_NAME}")
    return name


def replace_lb(notes: Optional[str], lb: Optional[float]) -> Optional[str]:
    """The notes with the score they state (the last "lb mIoU : X") set to `lb`, or removed
    when `lb` is None; notes stating no score are returned unchanged."""
    if not notes:
        return notes
    matches = list(_LB.finditer(notes))
    if not matches:
        return notes
    last = matches[-1]
    if lb is not None:
        return notes[:last.start(1)] + f"{lb:g}" + notes[last.end(1):]
    before, after = notes[:last.start()].rstrip(" ,.;"), notes[last.end():].lstrip(" ,.;")
    joined = f"{before}. {after}" if before and after else before or after
    return joined or None


def header_role(header: str) -> Optional[str]:
    key = re.sub(r"[\s_\-.]+", "", header.strip().lower())
    return _ROLE_OF.get(key)


def metric_name(header: str) -> str:
    """A score column's metric name: lower case, each run of other characters one `_`
    (`mIoU(latest)` -> `miou_latest`, `LB score(mAP50)` -> `lb_score_map50`)."""
    return "_".join(_HEADER_WORD.findall(unescape_cell(header).lower())) or "score"


def is_score_header(header: str) -> bool:
    return bool(_METRIC_WORDS.intersection(_HEADER_WORD.findall(header.lower())))


def metric_kind(name: str) -> str:
    """"leaderboard" where the metric's name says so (lb, public, private), else "validation"."""
    return "leaderboard" if _LEADERBOARD_WORDS.intersection(name.split("_")) else "validation"


def roles_for(headers: list[str], name_column: Optional[str] = None) -> list[Optional[str]]:
    """Role per header; a role claimed twice counts for its first column only. Headers with no
    other role that name a metric are "score" columns (every one of them).

    Args:
        name_column: the header that names a run, whatever its name (``--name-column``).
    """
    seen: set[str] = set()
    roles: list[Optional[str]] = []
    for header in headers:
        role = "name" if header == name_column else header_role(header)
        if name_column is not None and role == "name" and header != name_column:
            role = None
        if role in seen:
            role = None
        if role:
            seen.add(role)
        if role is None and is_score_header(header):
            role = "score"
        roles.append(role)
    return roles


def score_columns(headers: list[str], roles: list[Optional[str]]) -> list[tuple[str, str]]:
    """(header, metric name) of every column whose cells are metrics: the score columns and the LB one."""
    return [(h, metric_name(h)) for h, role in zip(headers, roles) if role in ("score", "lb")]


# A table is a log of runs when it names them, or when it has the columns a run's row has:
# two of a date, a model, arguments, a link and a score.
_RUN_ROLES = {"date", "model", "args", "links", "lb", "score"}


def is_experiment_table(headers: list[str], name_column: Optional[str] = None) -> bool:
    roles = roles_for(headers, name_column)
    return "name" in roles or len(_RUN_ROLES.intersection(roles)) >= 2


def is_blank_row(cells: list[str]) -> bool:
    """A placeholder row (`|   |   |`): every cell empty."""
    return not any(c.strip() for c in cells)


def encoder_header(headers: list[str]) -> Optional[str]:
    """The column naming a run's encoder or backbone, if the table has one."""
    for header in headers:
        if re.sub(r"[\s_\-.]+", "", header.strip().lower()) in _ENCODER_HEADERS:
            return header
    return None


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def parse_score(cell: str) -> Optional[float]:
    """A score cell's number (`0.6293`, `**0.61**`), or None when it states none (`no submission`, `-`)."""
    text = unescape_cell(cell).strip().strip("*_`").strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if value == value and abs(value) != float("inf") else None


_DATE_FORMS = (
    re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})"),  # 2021-05-03, 2021.05.03, 2021/5/3
    re.compile(r"(\d{4})(\d{2})(\d{2})"),  # 20210503
)


def parse_date(text: Optional[str]) -> Optional[str]:
    """A date cell as an ISO date (`2021.05.03` -> `2021-05-03`), or None when it is not an
    unambiguous date (`05/03`, `3 May`, `yesterday`). An ISO date-time keeps its date."""
    if not text:
        return None
    text = text.strip()
    head = text[:10] if len(text) > 10 and text[10:11] in ("T", " ") else text
    for form in _DATE_FORMS:
        match = form.fullmatch(head)
        if match:
            year, month, day = (int(g) for g in match.groups())
            try:
                return date(year, month, day).isoformat()
            except ValueError:
                return None
    return None


def parse_links(cell: str) -> list[str]:
    text = cell.strip()
    if text in ("", NONE_CELL):
        return []
    urls = [m.group(2) for m in _LINK.finditer(text)]
    urls += _BARE_URL.findall(_LINK.sub(" ", text))
    return urls


def link_key(url: str) -> str:
    """What makes two links the same W&B page: `?workspace=user-...` only picks whose view opens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def parse_notes(cell: str) -> Optional[str]:
    text = unescape_cell(cell.strip())
    return None if text in ("", NONE_CELL) else text


def parse_lb(text: Optional[str]) -> Optional[float]:
    """The leaderboard score a cell or a note states, if any (the last one when several)."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    found = _LB.findall(text)
    return float(found[-1]) if found else None


def parse_text(cell: str) -> Optional[str]:
    text = unescape_cell(cell.strip())
    return text or None


def fields_from_cells(cells: dict[str, str], headers: list[str], name_column: Optional[str] = None) -> dict[str, Any]:
    """The run fields a table row states. Cells are Markdown source, as in the file."""
    roles = roles_for(headers, name_column)
    by_role = {role: cells.get(h, "") for h, role in zip(headers, roles) if role and role != "score"}
    from ledger.core.args import parse_arguments  # (loaded where rows are read: `show` never needs it)

    args_cell = by_role.get("args")
    parsed = parse_arguments(args_cell)
    notes = parse_notes(by_role.get("notes", ""))
    lb = parse_lb(unescape_cell(by_role["lb"])) if "lb" in by_role else None
    if lb is None:
        lb = parse_lb(notes)
    model = parse_text(by_role.get("model", ""))
    name = parse_text(by_role.get("name", "")) or ""
    is_ensemble = parsed.status == "none" and any(
        "ensemble" in (v or "").lower() for v in (model, name)
    )
    written_date = parse_text(by_role.get("date", ""))
    return {
        "name": name,
        "date": written_date,
        "date_iso": parse_date(written_date),
        "model": model,
        "args_raw": args_cell,
        "args": parsed.values,
        "args_status": parsed.status,
        "args_error": parsed.error,
        "args_form": getattr(parsed, "form", None),
        "links": parse_links(by_role.get("links", "")),
        "notes": notes,
        "lb_miou": lb,
        "scores": {metric: parse_score(cells.get(h, "")) for h, metric in score_columns(headers, roles)} or None,
        "kind": "ensemble" if is_ensemble else "logged",
    }


def cell_agrees(role: str, cell: str, run: Any) -> bool:
    """Whether the cell as written still says what the run's fields say."""
    if role == "date":
        return parse_text(cell) == run.date
    if role == "name":
        return parse_text(cell) == run.name
    if role == "model":
        return parse_text(cell) == run.model
    if role == "args":
        return cell == run.args_raw
    if role == "links":
        return parse_links(cell) == list(run.links or [])
    if role == "notes":
        return parse_notes(cell) == run.notes
    if role == "lb":
        return parse_lb(unescape_cell(cell)) == run.lb_miou
    return True


def score_agrees(header: str, cell: str, run: Any) -> bool:
    return parse_score(cell) == (run.scores or {}).get(metric_name(header))


def _is_url(text: str) -> bool:
    return str(text).startswith(("https://", "http://"))


def render_cell(role: Optional[str], run: Any, *, link_label: str = DEFAULT_LINK_LABEL) -> str:
    """A cell for a row that has no source text (or whose field has changed since)."""
    if role is None:
        return ""
    if role == "date":
        return escape_cell(run.date or "")
    if role == "name":
        return escape_cell(run.name)
    if role == "model":
        return escape_cell(run.model or NONE_CELL)
    if role == "args":
        if run.args_raw is not None:
            return run.args_raw
        from ledger.core.args import render_arguments

        return render_arguments(run.args) if run.args else NONE_CELL
    if role == "links":
        # Only a URL is written as a link: an offline W&B run's local folder means nothing in a team's log.
        links = list(run.links or [])
        cells = [f"[{link_label}]({url})" if _is_url(url) else "W&B offline run" for url in links]
        return "<br>".join(cells) if cells else NONE_CELL
    if role == "notes":
        return escape_cell(run.notes) if run.notes else NONE_CELL
    if role == "lb":
        return "" if run.lb_miou is None else f"{run.lb_miou:g}"
    raise ValueError(f"unknown role {role!r}")


def row_cells(run: Any, headers: list[str], *, link_label: str = DEFAULT_LINK_LABEL,
              name_column: Optional[str] = None) -> list[str]:
    """The cells of a run's row under `headers`: as written where still true, else rendered."""
    stored = run.cells or {}
    out = []
    for header, role in zip(headers, roles_for(headers, name_column)):
        cell = stored.get(header)
        if role == "score":
            if cell is None or not score_agrees(header, cell, run):
                value = (run.scores or {}).get(metric_name(header))
                cell = "" if value is None else f"{value:g}"
        elif cell is None or (role is not None and not cell_agrees(role, cell, run)):
            cell = render_cell(role, run, link_label=link_label)
        out.append(cell)
    return out


def link_label_of(cells: list[dict[str, str]], headers: list[str]) -> str:
    """The label the log uses for its links (`[WanDB_link](...)`), for rows added later."""
    roles = roles_for(headers)
    if "links" not in roles:
        return DEFAULT_LINK_LABEL
    header = headers[roles.index("links")]
    for row in cells:
        match = _LINK.search(row.get(header, ""))
        if match:
            return match.group(1)
    return DEFAULT_LINK_LABEL
