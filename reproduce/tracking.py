"""W&B logging of a reproduction: the original's keys, the resolved job as the config.

Online only when credentials exist; otherwise offline, so a run never blocks on the
network and its files can be synced later with `wandb sync`.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any, Optional

MODES = ("auto", "online", "offline", "disabled")
# Where new runs go when neither --wandb-project nor $WANDB_PROJECT says: never the
# original author's project (a reproduction of a seed row keeps that in its job, for reference).
DEFAULT_PROJECT = "ledger"


def destination(project: Optional[str] = None, entity: Optional[str] = None) -> tuple[str, Optional[str]]:
    """The W&B project and entity a new run logs to: the options, else $WANDB_PROJECT /
    $WANDB_ENTITY, else project `ledger` under the user's own default entity."""
    project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    entity = entity or os.environ.get("WANDB_ENTITY") or None
    return project, entity


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def choose_mode(requested: str) -> str:
    if requested not in MODES:
        raise ValueError(f"unknown W&B mode {requested!r}; use one of {', '.join(MODES)}")
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if has_credentials() else "offline"


class Tracker:
    """Logs steps to W&B; `link` is the run's URL online, or its folder offline."""

    def __init__(self, *, job: Any, config: dict[str, Any], run_dir: Path, mode: str, resume_id: Optional[str] = None,
                 project: Optional[str] = None, entity: Optional[str] = None):
        self.mode = choose_mode(mode)
        self.run = None
        self.link: Optional[str] = None
        if self.mode == "disabled":
            return
        import wandb

        # The environment already records the project commit; W&B's own git probe only warns
        # when the run folder is outside a checkout.
        settings = wandb.Settings(silent=True, console="off", init_timeout=60, x_disable_stats=True, disable_git=True)
        self.run = wandb.init(
            project=project or DEFAULT_PROJECT, entity=entity if self.mode == "online" else None,
            group=job.wandb_group, name=job.wandb_name, config=config, dir=str(run_dir), mode=self.mode,
            id=resume_id, resume="allow" if resume_id else None, settings=settings, reinit="finish_previous",
        )
        if self.mode == "online":
            self.link = self.run.url
        else:
            self.link = str(Path(self.run.dir).parent)

    @property
    def run_id(self) -> Optional[str]:
        return self.run.id if self.run is not None else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
