"""`check` and `history` read the runs once, a batch at a time, and resolve each
configuration of arguments once (`JobViews`): the same answers as resolving every row,
and as the rules written over a list of every run, with memory that does not grow with
the runs."""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import SEED_V2
from ledger.analysis.check import _SIMPLE_URL, _link_key, check_ledger
from ledger.analysis.history import history, iter_history
from ledger.analysis.jobs import JobViews, run_job
from ledger.analysis.repeats import repeats_of
from ledger.core.args import render_arguments
from ledger.core.cells import link_key
from ledger.store.db import open_ledger, transaction
from ledger.store.importer import import_file
from ledger.store.models import Run
from ledger.store.shapes import nest_children
from ledger.store.sql_reader import get_run, list_runs
from test_analysis import ARGS, add_reproduction, load, row, table

MULTI = "multiple_aug_with_multi_loss"


def _names(session):
    return [r.name for r in list_runs(session)]


# ------------------------------------------------------------------ JobViews


def _odd_rows(session) -> None:
    """Rows the stand-in must tell apart, or must not stand in for."""
    base = {"batch_size": 8, "criterion": "cross_entropy", "lr": 0.0001, "num_epochs": 10, "seed": 42,
            "weight_decay": 1e-06}
    variants = [
        ("plain_a", "2021-05-02", {**base, "run_name": "plain_a"}),
        ("plain_b", "2021-05-03", {**base, "run_name": "plain_b"}),  # the same code state, another date
        ("late", "2021-05-20", {**base, "run_name": "late"}),  # another code state
        ("other_run_name", "2021-05-02", {**base, "run_name": "plain_a"}),
        ("int_lr", "2021-05-02", {**base, "lr": 1, "run_name": "int_lr"}),  # 1 is not 1.0 is not True
        ("float_lr", "2021-05-02", {**base, "lr": 1.0, "run_name": "float_lr"}),
        ("zero_wd", "2021-05-02", {**base, "weight_decay": 0.0, "run_name": "zero_wd"}),
        ("minus_zero_wd", "2021-05-02", {**base, "weight_decay": -0.0, "run_name": "minus_zero_wd"}),
        ("no run name", "2021-05-02", {**base, "run_name": "no run name"}),  # not plain: on its own
        ("numeric_run_name", "2021-05-02", {**base, "run_name": 7}),
        ("unknown_key", "2021-05-02", {**base, "run_name": "unknown_key", "bogus": 1}),
        ("empty_args", "2021-05-02", {}),
        ("null_args", "2021-05-02", None),
    ]
    for i, (name, date, args) in enumerate(variants):
        raw = render_arguments(args) if args else None
        session.add(Run(name=name, position=100 + i, date=date, args=args, args_raw=raw,
                        args_status="ok" if args is not None else "none", links=[]))
    session.flush()


def test_job_views_give_what_run_job_gives(seeded_engine):
    with transaction(seeded_engine) as session:
        import_file(session, SEED_V2)
        _odd_rows(session)
        add_reproduction(session, MULTI, "r1", val=0.5)
        views = JobViews(size=3)  # small: the memo is also emptied on the way
        runs = list(session.scalars(select(Run).order_by(Run.position, Run.id)))
        for run in runs + runs:  # a second time, from the memo
            assert views.of(run) == run_job(run), run.name
        assert views.memo  # some were shared


# ------------------------------------------------------------------ links


@pytest.mark.parametrize("url", [
    "https://wandb.ai/team/proj/runs/abc123?workspace=user-a", "HTTPS://WandB.AI/Team/runs/x/", "http://h:8080/a#b?c",
    "https://x/경로", "https://x", "https://x/?", "https://user@x/a//", "ftp://x/a", "x+y.z-w://h/p",
    "https://[::1]/a", "https:///a", "https://x/a b", " https://x/a", "https://x/\ta", "https:x/a", "wandb.ai/a",
    "https://한국.kr/a", "", "//x/a",
])
def test_the_quick_link_key_is_link_key(url):
    try:
        expected = link_key(url)
    except ValueError:
        pytest.skip("link_key refuses it")
    assert _link_key(url) == expected


def test_the_quick_link_key_is_used_for_the_common_link():
    assert _SIMPLE_URL.fullmatch("https://wandb.ai/pstage12/jaesub/runs/e8145d73e5?workspace=user-shjas94")


# ------------------------------------------------------------------ check's rules across rows


def findings(engine, **kw):
    with transaction(engine) as session:
        report = check_ledger(session, **kw)
    return [(f.row, f.run, f.code, f.message) for f in report.findings]


def test_check_across_rows(engine, tmp_path):
    # What the rules found when they were written over a list of every run (checked then).
    url = "https://wandb.ai/team/proj/runs/abc123"
    load(engine, table(
        row("a", link=f"[W&B]({url}?workspace=user-a)"),
        row("b", args=ARGS.replace("run_name='{name}'", "run_name='shared'"),
            link=f"[W&B]({url}/)<br>[W&B]({url}?x=1)"),  # the page of row 1, twice
        row("c", args=ARGS.replace("run_name='{name}'", "run_name='e'")),  # the name of a later row
        row("shared", args=ARGS.replace("run_name='{name}'", "run_name='shared'")),
        row("d", args=ARGS.replace("run_name='{name}'", "run_name='shared'"),
            link="[W&B](HTTPS://WANDB.ai/team/proj/runs/abc123)"),
        row("e", link=f"[W&B]({url}?again)"),
    ), tmp_path)
    assert findings(engine) == [
        (2, "b", "run-name-mismatch",
         "the arguments record run_name='shared', not the row's name (it is the name of row 4 (shared))"),
        (2, "b", "run-name-shared",
         "run_name='shared' is also the run_name of row 4 (shared), row 5 (d): their W&B runs share one name"),
        (2, "b", "link-shared", f"the W&B link {url}/ is also on row 1 (a)"),
        (2, "b", "link-shared", f"the W&B link {url}?x=1 is also on row 1 (a)"),
        (3, "c", "run-name-mismatch",
         "the arguments record run_name='e', not the row's name (it is the name of row 6 (e))"),
        (3, "c", "run-name-shared", "run_name='e' is also the run_name of row 6 (e): their W&B runs share one name"),
        (5, "d", "run-name-mismatch",
         "the arguments record run_name='shared', not the row's name (it is the name of row 4 (shared))"),
        (5, "d", "run-name-shared",
         "run_name='shared' is also the run_name of row 2 (b), row 4 (shared): their W&B runs share one name"),
        (5, "d", "link-shared", "the W&B link HTTPS://WANDB.ai/team/proj/runs/abc123 is also on row 1 (a)"),
        (6, "e", "link-shared", f"the W&B link {url}?again is also on row 1 (a)"),
    ]


def test_check_a_reproduction_before_its_original(seeded_engine):
    with transaction(seeded_engine) as session:
        get_run(session, MULTI).val_miou = 0.55
        early = add_reproduction(session, MULTI, "r_early", val=0.60)
        early.position = -1  # read before the row it reproduces
        add_reproduction(session, MULTI, "r_late", val=0.551)
    extra = [f for f in findings(seeded_engine) if f[1].startswith("r_")]
    assert extra == [
        (1, "r_early", "reproduction-disagrees",
         f"val mIoU 0.6000 differs by +0.0500 from the original's 0.5500 (row 8 ({MULTI})), "
         "more than the tolerance 0.01"),
        (12, "r_late", "repeats-disagree",  # as far from the mean as r_early: the later one
         "val mIoU 0.5510; its 2 sibling repeats range 0.5510..0.6000 (mean 0.5755), wider than the tolerance 0.01: "
         "r_early, r_late"),
    ]


# ------------------------------------------------------------------ history


def reference_history(session) -> list[dict]:
    """History as it was written over a list of every run, a resolution per run."""
    from ledger.analysis.history import HistoryEntry, _describe_change, sweep_of

    out, previous, previous_view, previous_repeats, scored, last_scores = [], None, None, None, None, {}
    for run, depth in nest_children(list_runs(session)):
        entry = HistoryEntry(run.name, run.date, run.kind, depth, run.parent.name if run.parent else None,
                             run.status, run.lb_miou, val_miou=run.val_miou, lb_val_miou=run.lb_val_miou,
                             notes=run.notes, sweep=sweep_of(run), section=run.section,
                             scores=dict(run.scores) if run.scores else None)
        if run.kind != "reproduction" and run.scores:
            entry.score_deltas = {m: v - last_scores[m] for m, v in run.scores.items()
                                  if v is not None and m in last_scores}
            last_scores.update((m, v) for m, v in run.scores.items() if v is not None)
        view = run_job(run)
        entry.job_error = view.error
        if run.kind == "reproduction":
            if view.job is not None:
                entry.overrides = {f: view.job.get(f) for f in view.overridden}
            out.append(entry.to_dict())
            continue
        if run.lb_miou is not None:
            if scored is not None:
                entry.lb_delta, entry.delta_from = run.lb_miou - scored.lb_miou, scored.name
            scored = run
        repeats = repeats_of(run)
        entry.repeats = repeats.to_dict() if repeats else None
        if run.kind == "logged":
            if previous is not None:
                _describe_change(entry, previous, previous_view, run, view)
                from ledger.analysis.repeats import spread_check

                entry.repeats_delta = spread_check(previous_repeats, repeats)
            previous, previous_view, previous_repeats = run, view, repeats
        out.append(entry.to_dict())
    return out


def test_history_is_what_it_was_over_a_list_of_every_run(seeded_engine):
    with transaction(seeded_engine) as session:
        import_file(session, SEED_V2)
        _odd_rows(session)
        r1 = add_reproduction(session, MULTI, "r1", val=0.55)
        add_reproduction(session, MULTI, "r2", val=0.56, overrides={"seed": 7})
        add_reproduction(session, "DeepLabV3_cosinelr_tmax_10_focal", "b1", val=0.5).position = 0  # before its parent
        # A reproduction of a reproduction: two levels down.
        session.add(Run(name="r1_again", position=999, kind="reproduction", parent=r1, job=r1.job,
                        job_hash=r1.job_hash, status="finished", val_miou=0.551, links=[], args=r1.args,
                        args_status="ok"))
        session.flush()
        expected = reference_history(session)
        got = [e.to_dict() for e in history(session)]
    assert got == expected
    assert [(e["name"], e["depth"]) for e in got if e["name"].startswith("r1")] == [("r1", 1), ("r1_again", 2)]


# ------------------------------------------------------------------ memory


def _synthetic(path: Path, runs: int) -> None:
    """`runs` logged runs of a few configurations, with notes that make `check` resolve some."""
    open_ledger(str(path), create=True).dispose()
    rows = []
    for i in range(runs):
        args = {"batch_size": 8, "criterion": ["cross_entropy", "focal"][i % 2], "lr": [1e-4, 3e-4, 1e-5][i % 3],
                "num_epochs": 10, "run_name": f"run_{i:06d}", "seed": 42, "weight_decay": 1e-06}
        rows.append((i, f"run_{i:06d}", "2021-05-02", render_arguments(args), json.dumps(args),
                     json.dumps([f"https://wandb.ai/t/p/runs/{i:08x}?workspace=user-x"]),
                     "CosineAnnealingLR tmax 10" if i % 10 == 0 else f"lb mIoU : 0.{5000 + i % 999}"))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO runs (position, name, date, args_raw, args, args_status, links, notes, kind, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, 'ok', ?, ?, 'logged', ?, ?)",
            [r + (datetime(2026, 1, 2).isoformat(" "),) * 2 for r in rows])
    conn.close()


def _peak(path: Path, work) -> int:
    engine = open_ledger(str(path), read_only=True)
    with transaction(engine, write=False) as session:
        tracemalloc.start()
        work(session)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    engine.dispose()
    return peak


@pytest.mark.parametrize("work", [
    lambda session: check_ledger(session),
    lambda session: sum(1 for _ in iter_history(session)),
], ids=["check", "history"])
def test_memory_does_not_grow_with_the_runs(tmp_path, work):
    paths = []
    for runs in (2_000, 8_000):
        paths.append(tmp_path / f"runs{runs}.db")
        _synthetic(paths[-1], runs)
    _peak(paths[0], work)  # once first, for what is made once per process (compiled queries)
    peaks = [_peak(path, work) for path in paths]
    # Four times the runs, the same peak but for a few bytes of hashes per run (tens of MB at
    # a million runs): a batch of runs is what takes the memory.
    assert (peaks[1] - peaks[0]) / 6_000 < 64, peaks
