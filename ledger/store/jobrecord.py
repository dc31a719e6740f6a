"""What the ledger stores about a job it started, and a row as job resolution takes it.

A run that ledger trained (a reproduction, or a run started with `ledger run --from`)
keeps its resolved job in the `job` column. `JobRecord` is that column's one typed
shape: `JobRecord.start` builds it when the row is appended, `JobRecord.of` reads it back,
and `to_json` is what is stored. Rows imported from a log have no record; resolution
takes them as a `RowInput` (`row_input`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ledger.core.errors import LedgerError

if TYPE_CHECKING:
    from reproduce.resolve import RowInput

# Keys of records written before this type existed and no longer read.
_RETIRED = frozenset({"warnings"})


@dataclass(frozen=True)
class JobRecord:
    """A started job: the resolved job with each field's provenance, and where it runs.

    `job` maps every job field to its value, `provenance` each field to its source and
    detail, as `reproduce.job.ResolvedJob.to_dict` writes them.
    """

    job: dict[str, Any]
    hash: str
    provenance: dict[str, dict[str, Any]]
    conflicts: tuple[dict[str, Any], ...] = ()
    # {"spec": "demo", "demo:tiny" or the --data given, "dir": the folder used, and for a demo
    # profile "generator": the synthetic set's parameters}
    data: Optional[dict[str, Any]] = None
    run_dir: Optional[str] = None  # checkpoints, job.json, args.yaml
    forked_from: Optional[str] = None  # `ledger run --from`: the row it started from
    wandb_id: Optional[str] = None  # the W&B run, resumed with the job
    wandb_project: Optional[str] = None  # where the run logs (never the original author's by default)
    wandb_entity: Optional[str] = None

    @classmethod
    def start(cls, resolved: Any, *, data_spec: str, data_dir: Path, run_dir: Path,
              forked_from: Optional[str] = None, generator: Optional[dict[str, Any]] = None,
              wandb_project: Optional[str] = None, wandb_entity: Optional[str] = None) -> "JobRecord":
        """The record of a job about to run: a `ResolvedJob` and where it runs."""
        plain = resolved.to_dict()
        data: dict[str, Any] = {"spec": data_spec, "dir": str(data_dir)}
        if generator is not None:
            data["generator"] = generator
        return cls(job=plain["job"], hash=plain["hash"], provenance=plain["provenance"],
                   conflicts=tuple(plain["conflicts"]), data=data, run_dir=str(run_dir), forked_from=forked_from,
                   wandb_project=wandb_project, wandb_entity=wandb_entity)

    @classmethod
    def of(cls, run: Any) -> Optional["JobRecord"]:
        """The record a run (an ORM `Run`, or any object with its `job` attribute) carries; None if none."""
        return cls.from_json(getattr(run, "job", None))

    @classmethod
    def from_json(cls, stored: Any) -> Optional["JobRecord"]:
        if not isinstance(stored, dict) or not isinstance(stored.get("job"), dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(stored) - known - _RETIRED)
        if unknown:
            raise LedgerError(f"a stored job has keys this ledger does not know ({', '.join(unknown)}); "
                              "was it written by a newer ledger?")
        values = {k: v for k, v in stored.items() if k in known}
        values["conflicts"] = tuple(values.get("conflicts") or ())
        values.setdefault("provenance", {})
        values.setdefault("hash", "")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The stored form: plain JSON, keys left out where they have no value."""
        out = dataclasses.asdict(self)
        out["conflicts"] = list(self.conflicts)
        return {k: v for k, v in out.items() if v is not None}

    def sources(self) -> dict[str, str]:
        """Each field's source: recorded, code-state, notes, default or override."""
        return {f: (p or {}).get("source", "") for f, p in self.provenance.items()}

    def details(self) -> dict[str, str]:
        return {f: (p or {}).get("detail", "") for f, p in self.provenance.items()}

    def overridden(self) -> list[str]:
        """Fields set by an override, in the job's field order."""
        sources = self.sources()
        return [f for f in self.job if sources.get(f) == "override"]

    def replace(self, **changes: Any) -> "JobRecord":
        return dataclasses.replace(self, **changes)

    @property
    def data_dir(self) -> Optional[Path]:
        return Path(self.data["dir"]) if self.data and self.data.get("dir") else None


def other_family(run: Any) -> Optional[str]:
    """Why the built-in rebuild (the seed log's code family) cannot stand for a row, or None.

    That code wrote its arguments as an argparse Namespace; a row without them, or with
    them in another form (CLI flags, JSON, free text, separate CSV columns), was trained
    by other code, and resolving it would fill every field with the seed code's defaults.
    """
    if run.kind == "ensemble":
        return None  # an ensemble has no job at all; resolution says so
    if run.args_status == "none" or not run.args:
        return "has no recorded arguments"
    from ledger.core.args import parse_arguments

    form = parse_arguments(run.args_raw).form if run.args_raw is not None else None
    if run.args_status == "ok" and form == "namespace":
        return None
    how = {None: "as separate values, not an Arguments cell", "flags": "as command-line flags",
           "json": "as JSON", "dict": "as a Python dict", "lines": "as free-form key=value lines"}.get(form, form)
    if run.args_status == "unparsed":
        how = f"in a form that could not be read ({run.args_error or 'unparsed'})"
    return f"records its arguments {how}, not in the seed code's form"


def row_input(run: Any) -> RowInput:
    """A ledger row as `reproduce.resolve` takes it."""
    from reproduce.resolve import RowInput

    return RowInput(run.name, run.date, run.args, run.args_status, run.args_error, run.kind)


def rows_from_log(text: str) -> dict[str, RowInput]:
    """Every row of a Markdown experiment log, by name, as resolution takes it (no ledger needed)."""
    from ledger.core.cells import fields_from_cells, is_blank_row, is_experiment_table
    from ledger.core.markdown import parse_log
    from reproduce.resolve import RowInput

    rows = {}
    for part in parse_log(text, accept=is_experiment_table).tables:
        table = part.table
        for cells in table.rows:
            if is_blank_row(cells):
                continue
            f = fields_from_cells(dict(zip(table.headers, cells)), table.headers)
            rows[f["name"]] = RowInput(f["name"], f["date"], f["args"], f["args_status"], f["args_error"], f["kind"])
    return rows
