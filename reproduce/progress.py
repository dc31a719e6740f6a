"""The terminal side of a training run: a progress bar per epoch, a line per finished epoch."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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

