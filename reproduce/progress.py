"""The terminal side of a training run: a progress bar per epoch and a closing summary."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class ProgressDisplay:
    def __init__(self, console: Console, num_epochs: int):
        self.console = console
        self.num_epochs = num_epochs
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.1f} img/s"),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self.task = None
        self.images = 0
        self.started = 0.0
        self.loss = math.nan

    def __enter__(self) -> "ProgressDisplay":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.images, self.started, self.loss = 0, time.perf_counter(), math.nan
        self.task = self.progress.add_task(f"epoch {epoch}/{self.num_epochs}", total=batches, loss=math.nan, speed=0.0)

    def on_batch(self, loss: float, images: int) -> None:
        self.images += images
        self.loss = loss if math.isnan(self.loss) else self.loss + (loss - self.loss) / 10
        speed = self.images / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=1, loss=self.loss, speed=speed)

    def on_epoch(self, result: Any) -> None:
        self.console.print(
            f"epoch {result.epoch}/{self.num_epochs}: train loss {result.train_loss:.4f}  val loss "
            f"{result.val_loss:.4f}  val mIoU {result.val_miou:.4f}  LB-style {result.lb_val_miou:.4f}  "
            f"({result.seconds:.1f} s, {result.images_per_s:.1f} img/s)",
            highlight=False,
        )


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=Text(f"{summary['name']}: finished"), title_justify="left", show_edge=False,
                  header_style="bold")
    for column in ("epoch", "train loss", "val loss", "val mIoU", "LB-style mIoU", "seconds"):
        table.add_column(column, justify="right")
    for e in summary["epochs"]:
        mark = " *" if e["epoch"] == summary["best_epoch"] else ""
        table.add_row(f"{e['epoch']}{mark}", f"{e['train_loss']:.4f}", f"{e['val_loss']:.4f}", f"{e['val_miou']:.4f}",
                      f"{e['lb_val_miou']:.4f}", f"{e['seconds']:.1f}")
    return table
