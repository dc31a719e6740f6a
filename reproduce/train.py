"""Running a resolved job: seeded data, the model, its loss and schedule, validation with
both metrics, checkpoints every epoch, and resumption that ends where an uninterrupted
run would have."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from reproduce.cutmix import cutmix_batch
from reproduce.data import DataError, MaskCache, SegmentationDataset, validate_data_dir
from reproduce.job import Job, improves
from reproduce.losses import build_loss
from reproduce.metrics import LBMIoU, ValMIoU, submission_row
from reproduce.models import build_model
from reproduce.optim import build_optimizer, build_scheduler
from reproduce.transforms import build_transforms

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_miou: float
    lb_val_miou: float
    lr: float
    seconds: float
    images_per_s: float
    per_class: dict[str, Optional[float]] = field(default_factory=dict)


@dataclass
class TrainResult:
    epochs: list[EpochResult]
    best_epoch: int
    best_val_miou: float
    best_lb_val_miou: float
    checkpoint: Path
    submission: Optional[Path]
    # The val mIoU of predicting background everywhere: a score at this level has learned no object.
    background_val_miou: Optional[float] = None
    background_lb_val_miou: Optional[float] = None


class Hooks:
    """What the caller wants told while training runs (progress, W&B, the ledger)."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_epoch_start(self, epoch: int, batches: int) -> None: ...
    def on_batch(self, loss: float, images: int) -> None: ...
    def on_epoch(self, result: EpochResult) -> None: ...
    def on_restored(self, history: list[EpochResult]) -> None: ...


def seed_everything(seed: int) -> None:
    """As the original: torch, CUDA, numpy and random seeded; cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def build_seeded_model(job: Job, factory: Callable[[Job], torch.nn.Module] = build_model) -> torch.nn.Module:
    """The job's model, initialised from the job's seed (as the original seeded first)."""
    seed_everything(job.seed)
    return factory(job)


def select_device(job: Job) -> torch.device:
    if job.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(job.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {job.device!r} was asked for but CUDA is not available here")
    return device


def configure_precision(job: Job, device: torch.device) -> None:
    """Exact mode keeps TF32 off (bit-for-bit closer to the 2021 runs); --fast allows it."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = job.fast
        torch.backends.cudnn.allow_tf32 = job.fast


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    # Each worker's seed derives from the loader's generator, so workers differ from one
    # another and the whole epoch is still a function of the saved RNG state.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    if transform is not None and hasattr(transform, "reseed"):
        transform.reseed(seed)


def check_image_size(job: Job, dataset: Any) -> None:
    if len(dataset) == 0:
        raise DataError(f"{dataset.ann_path} has no images")
    info = dataset.coco.imgs[dataset.image_ids[0]]
    size = (info.get("height"), info.get("width"))
    if size != (job.image_size, job.image_size):
        raise DataError(
            f"the job expects {job.image_size}x{job.image_size} images but {dataset.ann_path.name} has "
            f"{size[1]}x{size[0]}; pass --set image_size=N to match the data"
        )


def make_datasets(job: Job, data_dir: Path, cache_dir: Path) -> tuple[Any, Any, Any]:
    validate_data_dir(data_dir)
    train_tf = build_transforms(job, train=True, seed=job.seed)
    val_tf = build_transforms(job, train=False, seed=job.seed)
    train_ds = SegmentationDataset(
        data_dir, "train.json", transform=train_tf, scale=job.input_scale, mode="train",
        mask_cache=MaskCache.load_or_build(data_dir / "train.json", cache_dir), max_images=job.max_train_images,
    )
    val_ds = SegmentationDataset(
        data_dir, "val.json", transform=val_tf, scale=job.input_scale, mode="val",
        mask_cache=MaskCache.load_or_build(data_dir / "val.json", cache_dir), max_images=job.max_val_images,
    )
    check_image_size(job, train_ds)
    test_ds = None
    if (data_dir / "test.json").is_file():
        test_ds = SegmentationDataset(data_dir, "test.json", transform=val_tf, scale=job.input_scale, mode="test",
                                      mask_cache=None)
    return train_ds, val_ds, test_ds


def collate(batch: list[tuple]) -> tuple:
    # As the original: items collated as tuples, then images and masks stacked.
    columns = tuple(zip(*batch))
    return (torch.stack(columns[0]),) + tuple(
        torch.stack(c) if isinstance(c[0], torch.Tensor) else list(c) for c in columns[1:]
    )


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader_generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    loader_generator.set_state(state["loader"])


def make_train_loader(job: Job, dataset: Any, generator: torch.Generator) -> DataLoader:
    """Shuffled by `generator`, last partial batch dropped, as the original loader."""
    return DataLoader(
        dataset, batch_size=job.batch_size, shuffle=True, drop_last=job.train_drop_last,
        num_workers=job.num_workers, collate_fn=collate, generator=generator,
        worker_init_fn=_worker_init if job.num_workers else None,
    )


def train_step(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, *, job: Job, loss_fn: Any,
               optimizer: Any, scaler: Any, scheduler: Any, device: torch.device, amp: bool,
               channels_last: bool) -> torch.Tensor:
    """One optimisation step on a collated batch (after CutMix); returns the loss."""
    images = images.to(device, non_blocking=True)
    masks = masks.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, enabled=amp):
        loss = loss_fn(model(images), masks)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None and job.scheduler_step == "batch":
        scheduler.step()
    return loss


def train(
    job: Job,
    data_dir: Path,
    run_dir: Path,
    *,
    cache_dir: Path,
    resume: bool = False,
    hooks: Optional[Hooks] = None,
    model_factory: Callable[[Job], torch.nn.Module] = build_model,
) -> TrainResult:
    """Train `job` on the data in `data_dir`, writing checkpoints into `run_dir`.

    Every epoch ends with `last.pt` (model, optimiser, scheduler, RNG states, history)
    and, when validation improves on the job's checkpoint metric, `best.pt`. With
    `resume`, training continues after the last completed epoch of `last.pt`.
    """
    hooks = hooks or Hooks()
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(job.seed)
    device = select_device(job)
    configure_precision(job, device)

    train_ds, val_ds, test_ds = make_datasets(job, data_dir, cache_dir)
    loader_generator = torch.Generator()
    loader_generator.manual_seed(job.seed)
    train_loader = make_train_loader(job, train_ds, loader_generator)
    val_loader = DataLoader(val_ds, batch_size=job.val_batch_size, shuffle=False, drop_last=job.val_drop_last,
                            num_workers=job.num_workers, collate_fn=collate)
    if len(train_loader) == 0:
        raise DataError(f"{len(train_ds)} training images make no full batch of {job.batch_size}")
    if len(val_loader) == 0:
        raise DataError(f"{len(val_ds)} validation images make no full batch of {job.val_batch_size}")

    model = model_factory(job).to(device)
    seed_everything(job.seed)  # data order and augmentation do not depend on how the model was built
    channels_last = job.fast and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loss_fn, val_loss_fn = build_loss(job)
    optimizer = build_optimizer(job, model.parameters())
    scheduler = build_scheduler(job, optimizer)
    amp = job.fast and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    history: list[EpochResult] = []
    best: Optional[float] = None
    best_epoch = 0
    start_epoch = 1
    step = 0
    background_miou = background_lb_miou = None
    last_path = run_dir / LAST
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"no checkpoint to resume from in {run_dir}")
        state = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        history = [EpochResult(**h) for h in json.loads(state["history"])]
        best, best_epoch, step = state["best"], state["best_epoch"], state["step"]
        start_epoch = state["epoch"] + 1
        set_rng_state(state["rng"], loader_generator)
        hooks.on_restored(history)

    for epoch in range(start_epoch, job.num_epochs + 1):
        started = time.perf_counter()
        model.train()
        hooks.on_epoch_start(epoch, len(train_loader))
        running, seen = 0.0, 0
        if job.num_workers == 0:
            # In-process augmentation draws from a stream tied to the epoch, so a resumed
            # run sees the same augmentations as an uninterrupted one.
            train_ds.transform.reseed(job.seed * 100_003 + epoch)
        for images, masks, _info in train_loader:
            if job.cutmix:
                images, masks, _ = cutmix_batch(images, masks, prob=job.cutmix_prob, beta=job.cutmix_beta)
            loss = train_step(model, images, masks, job=job, loss_fn=train_loss_fn, optimizer=optimizer,
                              scaler=scaler, scheduler=scheduler, device=device, amp=amp,
                              channels_last=channels_last)
            step += 1
            seen += 1
            running += (loss.item() - running) / seen  # the epoch's running mean, as logged
            metrics = {"Train Loss": running}
            if job.log_lr:
                metrics["Learning Rate"] = optimizer.param_groups[0]["lr"]
            hooks.on_step(step, metrics)
            hooks.on_batch(loss.item(), images.shape[0])
        lr = optimizer.param_groups[0]["lr"]
        val = evaluate(model, val_loader, val_loss_fn, device, channels_last=channels_last, amp=amp)
        background_miou, background_lb_miou = val["background_miou"], val["background_lb_miou"]
        if scheduler is not None and job.scheduler_step == "epoch":
            scheduler.step()
        seconds = time.perf_counter() - started
        result = EpochResult(
            epoch=epoch, train_loss=running, val_loss=val["loss"], val_miou=val["miou"],
            lb_val_miou=val["lb_miou"], lr=lr, seconds=seconds,
            images_per_s=len(train_loader) * job.batch_size / seconds, per_class=val["per_class"],
        )
        history.append(result)
        watched = result.val_miou if job.checkpoint_metric == "val_miou" else result.val_loss
        if improves(job.checkpoint_metric, watched, best):
            best, best_epoch = watched, epoch
            _atomic_save({"model": model.state_dict(), "epoch": epoch, "job": json.dumps(job.to_dict())},
                         run_dir / BEST)
        _atomic_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch,
                "step": step,
                "best": best,
                "best_epoch": best_epoch,
                "history": json.dumps([asdict(h) for h in history]),
                "rng": rng_state(loader_generator),
                "job": json.dumps(job.to_dict()),
            },
            last_path,
        )
        hooks.on_step(step, {"Val mIoU": result.val_miou, "Val Loss": result.val_loss})
        hooks.on_epoch(result)

    best_result = next(h for h in history if h.epoch == best_epoch) if best_epoch else history[-1]
    submission = None
    if test_ds is not None and (run_dir / BEST).exists():
        state = torch.load(run_dir / BEST, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        submission = write_submission(model, test_ds, run_dir / "submission.csv", device, job)
    return TrainResult(
        epochs=history, best_epoch=best_result.epoch, best_val_miou=best_result.val_miou,
        best_lb_val_miou=best_result.lb_val_miou, checkpoint=run_dir / BEST, submission=submission,
        background_val_miou=background_miou, background_lb_val_miou=background_lb_miou,
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, loss_fn: Any, device: torch.device, *,
             channels_last: bool = False, amp: bool = False) -> dict[str, Any]:
    """Validation loss (criterion1), the logged val mIoU and the leaderboard-style mIoU."""
    model.eval()
    val_metric, lb_metric, background, lb_background = ValMIoU(), LBMIoU(), ValMIoU(), LBMIoU()
    total, batches = 0.0, 0
    for images, masks, _info in loader:
        images = images.to(device)
        masks = masks.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=amp):
            logits = model(images)
        total += loss_fn(logits.float(), masks).item()
        batches += 1
        pred = logits.argmax(dim=1).cpu().numpy()
        true = masks.cpu().numpy()
        val_metric.update(pred, true)
        lb_metric.update(pred, true)
        background.update(np.zeros_like(true), true)
        lb_background.update(np.zeros_like(true), true)
    computed = val_metric.compute()
    return {"loss": total / max(batches, 1), "miou": computed["miou"], "per_class": computed["per_class"],
            "lb_miou": lb_metric.compute(), "background_miou": background.compute()["miou"],
            "background_lb_miou": lb_background.compute()}


@torch.no_grad()
def write_submission(model: torch.nn.Module, dataset: Any, path: Path, device: torch.device, job: Job) -> Path:
    """The competition's CSV: image_id (the file name) and the 256x256 mask, row-major."""
    model.eval()
    loader = DataLoader(dataset, batch_size=job.val_batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("image_id,PredictionString\n")
        for images, infos in loader:
            pred = model(images.to(device)).argmax(dim=1).cpu().numpy()
            for mask, info in zip(pred, infos):
                fh.write(f"{info['file_name']},{submission_row(mask)}\n")
    os.replace(tmp, path)
    return path


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
