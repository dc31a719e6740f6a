"""Edits to runs: what became known after a run (its score, a note, a link), its name, its
tags, and removing it. Each edit is a function of an open write session; the caller commits,
so that one command is one transaction. `ledger export` writes every edit into the log.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.core.cells import check_name, link_key, metric_name, parse_lb, parse_links, replace_lb, roles_for
from ledger.core.errors import LedgerError
from ledger.store.liveness import reap_stale
from ledger.store.models import Document, Run, Tag
from ledger.store.sql_reader import get_run


@dataclass
class SetResult:
    run: str
    changed: list[str]
    lb_miou: Optional[float]
    notes: Optional[str]
    links: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _append_note(notes: Optional[str], text: str) -> str:
    # The log joins its sentences with ". " (row 05-03: "...으로 변경. lb mIoU : 0.6 달성").
    if not notes:
        return text
    notes = notes.rstrip()
    return f"{notes} {text}" if notes.endswith((".", "。", "!", "?")) else f"{notes}. {text}"


def lb_header(session: Session, run: Run) -> Optional[str]:
    """The LB column of the run's table in the exported document, if it has one."""
    from ledger.store.export import document_tables

    document = session.scalars(select(Document)).first()
    if document is None:
        return None
    layouts = document_tables(document)
    index = run.table_index if run.table_index is not None and 0 <= run.table_index < len(layouts) else -1
    headers = list(layouts[index]["headers"])
    roles = roles_for(headers, layouts[index].get("name_column"))
    return headers[roles.index("lb")] if "lb" in roles else None


def set_run(session: Session, name: str, *, lb: Optional[float] = None, clear_lb: bool = False,
            note: Optional[str] = None, notes: Optional[str] = None, clear_notes: bool = False,
            link: Optional[str] = None) -> SetResult:
    """Record what became known after a run: its leaderboard score, a note, a W&B link.

    The score replaces the one the run had. Where the log has no LB column (the seed keeps
    scores in its notes), the notes' own `lb mIoU : X` is replaced too, or appended when
    they state none, so that the exported log says the new score once.

    Args:
        session: an open ledger session; the caller commits.
        name: the run.
        lb: the leaderboard mIoU, 0..1; `clear_lb` removes it instead.
        note: text appended to the notes, unless they already hold it.
        notes: text that replaces the notes; `clear_notes` empties them.
        link: a W&B run URL added to the run's links.
    """
    if lb is None and not clear_lb and note is None and notes is None and not clear_notes and link is None:
        raise LedgerError("nothing to set: pass --lb, --clear-lb, --note, --notes, --clear-notes or --link")
    if lb is not None and clear_lb:
        raise LedgerError("--lb and --clear-lb contradict each other")
    if sum((note is not None, notes is not None, clear_notes)) > 1:
        raise LedgerError("pass one of --note (append), --notes (replace) and --clear-notes")
    reap_stale(session)
    run = get_run(session, name, for_update=True)
    changed: list[str] = []  # in the order the edits were made, each field once

    def assign(field_name: str, value: Any) -> None:
        if getattr(run, field_name) != value:
            setattr(run, field_name, value)
            if field_name not in changed:
                changed.append(field_name)

    if clear_notes:
        assign("notes", None)
    elif notes is not None:
        assign("notes", notes.strip() or None)
    elif note is not None:
        text = note.strip()
        if not text:
            raise LedgerError("--note is empty")
        if text not in (run.notes or ""):
            assign("notes", _append_note(run.notes, text))
    if lb is not None:
        if not (isinstance(lb, (int, float)) and 0.0 <= lb <= 1.0):
            raise LedgerError(f"--lb must be an mIoU between 0 and 1, not {lb}")
        assign("lb_miou", float(lb))
    elif clear_lb:
        assign("lb_miou", None)
    header = lb_header(session, run) if lb is not None or clear_lb else None
    if (lb is not None or clear_lb) and header is None:
        # The notes are where this log keeps its score: say the new one, once.
        if parse_lb(run.notes) is not None:
            assign("notes", replace_lb(run.notes, run.lb_miou))
        elif run.lb_miou is not None:
            assign("notes", _append_note(run.notes, f"lb mIoU : {run.lb_miou:g}"))
    elif header is not None:
        # The LB column is one of the log's score columns too: its metric says the same.
        assign("scores", {**(run.scores or {}), metric_name(header): run.lb_miou})
    if link is not None:
        url = link.strip()
        if not re.fullmatch(r"https?://[^\s()<>|\[\]]+", url) or parse_links(f"[x]({url})") != [url]:
            raise LedgerError(f"--link must be a http(s) URL without spaces, brackets or '|', not {link!r}")
        key = link_key(url)
        for other in session.scalars(select(Run).where(Run.id != run.id)):
            if any(link_key(u) == key for u in other.links or []):
                raise LedgerError(f"the link {url} is already on the run {other.name!r}")
        if all(link_key(u) != key for u in run.links or []):
            assign("links", list(run.links or []) + [url])
    session.flush()
    return SetResult(run.name, changed, run.lb_miou, run.notes, list(run.links or []))


@dataclass
class EditResult:
    """What an edit did: the run (by its name after the edit) and a few words saying what changed."""

    run: str
    changed: bool
    detail: str
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rename_run(session: Session, old: str, new: str) -> EditResult:
    """Give a run another name. Its links, reproductions, tags and place in the log stay;
    the exported log shows the new name in the run's row."""
    check_name(new, "the new name")
    reap_stale(session)
    run = get_run(session, old, for_update=True)
    if new == run.name:
        return EditResult(run.name, False, "already has that name")
    if session.scalar(select(Run.id).where(Run.name == new)) is not None:
        raise LedgerError(f"a run named {new!r} already exists")
    run.name = new
    session.flush()
    return EditResult(new, True, f"renamed from {old}")


def remove_run(session: Session, name: str, *, with_reproductions: bool = False) -> EditResult:
    """Remove a run, its metrics and tags. A run that reproductions point at is refused unless
    `with_reproductions`, which removes them too (and theirs)."""
    reap_stale(session)
    run = get_run(session, name, for_update=True)
    doomed = _with_descendants(session, run)
    children = [r.name for r in doomed if r is not run]
    if children and not with_reproductions:
        shown = ", ".join(children[:5]) + (f" and {len(children) - 5} more" if len(children) > 5 else "")
        raise LedgerError(f"{name} has {len(children)} reproduction(s) ({shown}); remove them too with "
                          "--with-reproductions, or remove them first")
    live = [r.name for r in doomed if r.status == "running"]
    if live:
        raise LedgerError(f"{', '.join(live)} is running; stop it (or let `ledger check --fix` mark it "
                          "interrupted) before removing it")
    for doomed_run in reversed(doomed):  # children before their parents
        session.delete(doomed_run)
        session.flush()
    return EditResult(name, True, "removed" + (f" with {len(children)} reproduction(s)" if children else ""),
                      removed=[r.name for r in doomed])


def _with_descendants(session: Session, run: Run) -> list[Run]:
    out, frontier = [run], [run.id]
    while frontier:
        found = list(session.scalars(select(Run).where(Run.parent_id.in_(frontier)).order_by(Run.position)))
        out += found
        frontier = [r.id for r in found]
    return out


MAX_TAG = 64  # the tags.tag column
_TAG = re.compile(r"[^\s,=<>!~|]+")


def tag_run(session: Session, name: str, tags: list[str], *, remove: bool = False) -> EditResult:
    """Add `tags` to a run (or remove them); a tag already there, or already absent, is no change."""
    if not tags:
        raise LedgerError("name at least one tag")
    for tag in tags:
        if not _TAG.fullmatch(tag) or len(tag) > MAX_TAG:
            raise LedgerError(f"a tag is one word of at most {MAX_TAG} characters, without spaces, commas, "
                              f"'|' or comparison signs: {tag!r}")
    reap_stale(session)
    run = get_run(session, name, for_update=True)
    have = {t.tag for t in run.tags}
    if remove:
        gone = [t for t in run.tags if t.tag in tags]
        for t in gone:
            run.tags.remove(t)
        changed = [t.tag for t in gone]
    else:
        changed = [t for t in dict.fromkeys(tags) if t not in have]
        run.tags.extend(Tag(tag=t) for t in changed)
    session.flush()
    verb = "untagged" if remove else "tagged"
    detail = f"{verb} {', '.join(changed)}" if changed else ("had none of those tags" if remove else "already tagged")
    return EditResult(run.name, bool(changed), detail)
