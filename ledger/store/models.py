"""The ledger's tables: runs, their metric series, the exported document's layout, imports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ledger.core.clock import utcnow

# What a row is, where its job stands, and how its Arguments cell was read. Stored as plain
# strings (the columns are VARCHAR(16)); the Literals say which strings the code writes.
Kind = Literal["logged", "reproduction", "ensemble"]
Status = Literal["queued", "running", "finished", "failed", "interrupted"]
ArgsStatus = Literal["ok", "loose", "none", "unparsed"]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """One row of the log: a logged run, a reproduction of one, or an ensemble."""

    __tablename__ = "runs"
    # Read indexes (migration 0005): each column a filter or sort names, with position for
    # ties; lower(name) for suggestions. PostgreSQL also has descending ones for the scores
    # and created_at, and the side table run_args indexes the parsed arguments.
    __table_args__ = (
        *(Index(f"ix_runs_{column}", column, "position")
          for column in ("model", "kind", "lb_miou", "val_miou", "lb_val_miou", "args_status", "created_at")),
        Index("ix_runs_status_position", "status", "position"),
        Index("ix_runs_lower_name", text("lower(name)")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Order of the rows in the log and in `ledger list`; new rows go last. Unique, so that two
    # writers appending at once cannot both take the same place (migration 0003).
    position: Mapped[int] = mapped_column(Integer, index=True, unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    date: Mapped[Optional[str]] = mapped_column(String(32))  # as written in the log
    model: Mapped[Optional[str]] = mapped_column(String(255))

    args_raw: Mapped[Optional[str]] = mapped_column(Text)  # the Arguments cell, verbatim
    args: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)  # parsed, typed values
    args_status: Mapped[ArgsStatus] = mapped_column(String(16), default="none")
    args_error: Mapped[Optional[str]] = mapped_column(Text)

    links: Mapped[list[Any]] = mapped_column(JSON, default=list)  # W&B run links, in order
    notes: Mapped[Optional[str]] = mapped_column(Text)  # verbatim, `\|` unescaped

    lb_miou: Mapped[Optional[float]] = mapped_column(Float)  # leaderboard score
    val_miou: Mapped[Optional[float]] = mapped_column(Float)  # best val mIoU (one matrix per set)
    lb_val_miou: Mapped[Optional[float]] = mapped_column(Float)  # val set scored the LB's way

    kind: Mapped[Kind] = mapped_column(String(16), default="logged")
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    status: Mapped[Optional[Status]] = mapped_column(String(16), index=True)  # jobs only

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    source: Mapped[Optional[str]] = mapped_column(Text)  # file it was imported from
    source_row: Mapped[Optional[int]] = mapped_column(Integer)  # 1-based row of that file's table
    # Every cell of the source row as written, keyed by header: unknown columns live here
    # too and go back out on export.
    cells: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    row_line: Mapped[Optional[str]] = mapped_column(Text)  # the source line, for unpadded tables

    # Reproductions (migration 0002).
    job: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    job_hash: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    environment: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    data_fingerprint: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    duration_s: Mapped[Optional[float]] = mapped_column(Float)
    checkpoint_path: Mapped[Optional[str]] = mapped_column(Text)
    error: Mapped[Optional[str]] = mapped_column(Text)

    # Who trains a running row, and when it last said so (migration 0003).
    host: Mapped[Optional[str]] = mapped_column(String(255))
    pid: Mapped[Optional[int]] = mapped_column(Integer)
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    # One entry per start of the job (see `ledger.store.attempts`); migration 0004.
    attempts: Mapped[Optional[list[Any]]] = mapped_column(JSON)
    # The command recipe's record (`ledger.commands`): argv, cwd, git state, env; migration 0004.
    command: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # The W&B or MLflow run a row was imported from (`ledger.store.trackers`); migration 0004.
    tracker_id: Mapped[Optional[str]] = mapped_column(String(255), index=True, unique=True)
    # A row on the queue (`ledger.queue`): max attempts, sweep, cancel request; migration 0004.
    queue: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)

    # Any team's log (migration 0006): which table of the document a row came from and the
    # heading above it; its score columns as metrics ({metric: number or None}); whether its
    # name was derived from its cells (the table has no run-name column); its date as ISO.
    table_index: Mapped[Optional[int]] = mapped_column(Integer)
    section: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    scores: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    name_derived: Mapped[bool] = mapped_column(default=False)
    date_iso: Mapped[Optional[str]] = mapped_column(String(10), index=True)

    parent: Mapped[Optional["Run"]] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list["Run"]] = relationship(back_populates="parent", passive_deletes=True)
    metrics: Mapped[list["Metric"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Metric.id"
    )
    tags: Mapped[list["Tag"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Tag.tag"
    )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, lb_miou={self.lb_miou!r})"


class Metric(Base):
    """One point of a metric series of a run (per epoch or per step)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[Optional[int]] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="metrics")

    def __repr__(self) -> str:
        return f"Metric(run_id={self.run_id!r}, name={self.name!r}, step={self.step!r}, value={self.value!r})"


class Tag(Base):
    """A label a user put on a run (`ledger tag RUN best-lb`); a run has each tag once."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("run_id", "tag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), index=True)

    run: Mapped[Run] = relationship(back_populates="tags")

    def __repr__(self) -> str:
        return f"Tag(run_id={self.run_id!r}, tag={self.tag!r})"


class Worker(Base):
    """A `ledger worker` draining the queue: who and where it is, and what it runs now."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[Optional[str]] = mapped_column(String(64))
    data: Mapped[Optional[str]] = mapped_column(Text)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), default=utcnow)
    run_id: Mapped[Optional[int]] = mapped_column(Integer)


class Document(Base):
    """The Markdown document the ledger exports: the text around the table and its header.

    One row; an import of an updated version of the log replaces it.
    """

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[Optional[str]] = mapped_column(Text)
    before: Mapped[str] = mapped_column(Text, default="")
    after: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[list[Any]] = mapped_column(JSON)
    aligns: Mapped[list[Any]] = mapped_column(JSON)
    aligned: Mapped[bool] = mapped_column(default=True)
    header_line: Mapped[Optional[str]] = mapped_column(Text)
    align_line: Mapped[Optional[str]] = mapped_column(Text)
    newline: Mapped[str] = mapped_column(String(2), default="\n")
    final_newline: Mapped[bool] = mapped_column(default=True)
    # Every table of the document, in order (migration 0006): each one's layout (headers,
    # aligns, aligned, header_line, align_line), the text after it, its section, line ending,
    # name column, and its blank placeholder rows. The columns above describe the first.
    tables: Mapped[Optional[list[Any]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Document(source={self.source!r}, headers={self.headers!r})"


class Import(Base):
    """What each import did, for the audit trail."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    added: Mapped[int] = mapped_column(Integer)
    changed: Mapped[int] = mapped_column(Integer)
    unchanged: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def __repr__(self) -> str:
        return f"Import(source={self.source!r}, added={self.added}, changed={self.changed})"
