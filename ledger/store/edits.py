"""Edits to a run that the log did not know when it was written: its score, a note, a link."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.core.cells import link_key, parse_lb, parse_links, roles_for
from ledger.core.errors import LedgerError
from ledger.store.models import Document, Run
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


def has_lb_column(session: Session) -> bool:
    document = session.scalars(select(Document)).first()
    return document is not None and "lb" in roles_for(list(document.headers))


def set_run(session: Session, name: str, *, lb: Optional[float] = None, note: Optional[str] = None,
            link: Optional[str] = None) -> SetResult:
    """Record what became known after a run: its leaderboard score, a note, a W&B link.

    Where the log has no LB column (the seed keeps scores in its notes), the score is also
    appended to the notes as `lb mIoU : X`, unless they already state it, so that the
    exported log carries it.

    Args:
        session: an open ledger session; the caller commits.
        name: the run.
        lb: the leaderboard mIoU, 0..1.
        note: text appended to the notes.
        link: a W&B run URL added to the run's links.
    """
    if lb is None and note is None and link is None:
        raise LedgerError("nothing to set: pass --lb, --note or --link")
    run = get_run(session, name, for_update=True)
    changed: list[str] = []
    if note is not None:
        text = note.strip()
        if not text:
            raise LedgerError("--note is empty")
        run.notes = _append_note(run.notes, text)
        changed.append("notes")
    if lb is not None:
        if not (isinstance(lb, (int, float)) and 0.0 <= lb <= 1.0):
            raise LedgerError(f"--lb must be an mIoU between 0 and 1, not {lb}")
        lb = float(lb)
        if run.lb_miou != lb:
            run.lb_miou = lb
            changed.append("lb_miou")
        if not has_lb_column(session) and parse_lb(run.notes) != lb:
            run.notes = _append_note(run.notes, f"lb mIoU : {lb:g}")
            if "notes" not in changed:
                changed.append("notes")
    if link is not None:
        url = link.strip()
        if not re.fullmatch(r"https?://[^\s()<>|\[\]]+", url) or parse_links(f"[x]({url})") != [url]:
            raise LedgerError(f"--link must be a http(s) URL without spaces, brackets or '|', not {link!r}")
        key = link_key(url)
        for other in session.scalars(select(Run).where(Run.id != run.id)):
            if any(link_key(u) == key for u in other.links or []):
                raise LedgerError(f"the link {url} is already on the run {other.name!r}")
        if all(link_key(u) != key for u in run.links or []):
            run.links = list(run.links or []) + [url]
            changed.append("links")
    session.flush()
    return SetResult(run.name, changed, run.lb_miou, run.notes, list(run.links or []))
