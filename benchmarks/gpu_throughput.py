"""Training throughput and peak memory of the real job's shape on an NVIDIA GPU, exact vs --fast.

For each backbone the log trained at full size (tf_efficientnet_b7_ns and
tf_efficientnet_b5_ns, from their seed rows, without pretrained weights) it builds the
job's model, loss, optimiser and scheduler and runs the training step of
``reproduce.train.train`` on synthetic tensors (random images and masks, 512x512,
batch 8) in two modes:

- exact: fp32 with TF32 off, as ``configure_precision`` sets it without ``--fast``;
- fast: TF32 on, AMP autocast with a GradScaler, channels-last model and input, as
  ``train()`` does with ``--fast``.

Both keep the job's seeding (cuDNN deterministic, no benchmark mode). Reports images/s
over the timed steps and ``torch.cuda.max_memory_allocated``. Without CUDA it exits
with code 2; ``--allow-cpu`` runs the same code on the CPU as a smoke check (smaller
defaults; there ``--fast`` changes nothing, as in ``train()``).

    PYTHONPATH=. python3 benchmarks/gpu_throughput.py                  # both backbones, both modes
    PYTHONPATH=. python3 benchmarks/gpu_throughput.py --steps 30 --warmup 5 --json out.json
    python benchmarks/gpu_throughput.py --allow-cpu                    # smoke check, 64 px, 3 steps

Needs torch, timm, OpenCV, madgrad (the rows' optimiser) and segmentation-models-pytorch
(the b5 row's label smoothing); nothing is downloaded. The lent H200 machine's python3
has all but the last two; both are pure-Python wheels to carry there (``.whl`` in
``carry``), made here in the repo's root with

    echo /.whl/ >> .git/info/exclude
    .venv/bin/python -m pip wheel --no-deps -w .whl madgrad==1.3 segmentation-models-pytorch==0.6.0

and installed there by starting the command with

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_throughput.py --json $OUT/gpu.json
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_RUNS = ("DeepLabV3_cosinelr_tmax_10_backbone_ns", "backbone_b5ns_label_smoothong_normalization")
MODES = ("exact", "fast")
REQUIRED = ("torch", "timm", "cv2", "madgrad", "segmentation_models_pytorch")
REPO = Path(__file__).resolve().parent.parent
SEED_LOG = REPO / "tests" / "data" / "experiments.md"
# (size, batch, steps, warmup) when not given: the real job on a GPU, a smoke check on the CPU.
GPU_DEFAULTS = (512, 8, 30, 5)
CPU_DEFAULTS = (64, 8, 3, 1)


def seed_row(name: str, log: Path):
    """The row called `name` in a Markdown experiment log, as resolution takes it."""
    from ledger.store.jobrecord import rows_from_log

    rows = rows_from_log(log.read_text(encoding="utf-8"))
    if name not in rows:
        raise SystemExit(f"no row {name!r} in {log}; rows: {', '.join(rows)}")
    return rows[name]


def measure(job, device, *, steps: int, warmup: int) -> dict[str, Any]:
    """Run `warmup + steps` training steps of `job` on one synthetic batch; time the last `steps`.

    The step is train()'s: zero_grad, forward and loss under autocast, GradScaler-scaled
    backward and optimiser step, per-batch scheduler step, and ``loss.item()``.
    """
    import torch

    from reproduce.losses import build_loss
    from reproduce.optim import build_optimizer, build_scheduler
    from reproduce.train import build_seeded_model, configure_precision, train_step

    cuda = device.type == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    configure_precision(job, device)
    built = time.perf_counter()
    model = build_seeded_model(job).to(device)
    build_s = time.perf_counter() - built
    model.train()
    channels_last = job.fast and cuda
    amp = job.fast and cuda
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn, _ = build_loss(job)
    optimizer = build_optimizer(job, model.parameters())
    scheduler = build_scheduler(job, optimizer)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    generator = torch.Generator(device=device)
    generator.manual_seed(job.seed)
    size = job.image_size
    images = torch.rand(job.batch_size, 3, size, size, device=device, generator=generator)
    masks = torch.randint(0, job.num_classes, (job.batch_size, size, size), device=device, generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    losses, step_s = [], []
    for i in range(warmup + steps):
        if i == warmup and cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss = train_step(model, images, masks, job=job, loss_fn=loss_fn, optimizer=optimizer, scaler=scaler,
                          scheduler=scheduler, device=device, amp=amp, channels_last=channels_last)
        losses.append(loss.item())  # waits for the device, as the job's loop does every step
        if i >= warmup:
            step_s.append(time.perf_counter() - start)
    total = sum(step_s)
    result = {
        "run": job.run_name, "backbone": job.backbone, "mode": "fast" if job.fast else "exact",
        "image_size": size, "batch_size": job.batch_size, "steps": steps, "warmup": warmup,
        "images_per_s": steps * job.batch_size / total, "ms_per_step": 1000 * total / steps,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "first_loss": losses[0], "last_loss": losses[-1], "model_build_s": build_s,
    }
    del model, optimizer, scheduler, scaler, images, masks, loss
    return result


def environment(device) -> str:
    import timm
    import torch

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"timm {timm.__version__}"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts += [f"CUDA {torch.version.cuda}", f"cuDNN {torch.backends.cudnn.version()}",
                  f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"]
    else:
        parts.append(f"CPU, {torch.get_num_threads()} threads")
    return ", ".join(parts)


def print_table(results: list[dict[str, Any]], *, speedup: bool = True) -> None:
    """One line per backbone and mode; fast's speed-up over exact when `speedup`."""
    print(f"{'backbone':<24}{'mode':<7}{'images/s':>10}{'ms/step':>10}{'peak GiB':>10}"
          f"{'loss first->last':>20}{'speed-up':>10}")
    exact_rate = {}
    for r in results:
        if r.get("error"):
            print(f"{r['backbone']:<24}{r['mode']:<7}  {r['error']}")
            continue
        if r["mode"] == "exact":
            exact_rate[r["backbone"]] = r["images_per_s"]
        peak = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a"
        ratio = r["images_per_s"] / exact_rate[r["backbone"]] if speedup and r["backbone"] in exact_rate else None
        losses = f"{r['first_loss']:.3f}->{r['last_loss']:.3f}"
        print(f"{r['backbone']:<24}{r['mode']:<7}{r['images_per_s']:>10.1f}{r['ms_per_step']:>10.1f}{peak:>10}"
              f"{losses:>20}{f'{ratio:.2f}x' if ratio else '':>10}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="seed rows (default: the b7 and b5 rows)")
    parser.add_argument("--log", type=Path, default=SEED_LOG, help="Markdown log holding the rows")
    parser.add_argument("--mode", choices=("both",) + MODES, default="both", help="exact, fast or both (default)")
    parser.add_argument("--size", type=int, help="image side (default 512; 64 with --allow-cpu on a CPU)")
    parser.add_argument("--batch", type=int, help="batch size (default 8)")
    parser.add_argument("--steps", type=int, help="timed steps (default 30; 3 on a CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 5; 1 on a CPU)")
    parser.add_argument("--allow-cpu", action="store_true", help="without CUDA, run a smoke check on the CPU")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    opts = parser.parse_args(argv)

    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"gpu_throughput: missing Python packages: {', '.join(missing)} "
              "(see this script's docstring for carrying them to a GPU machine)", file=sys.stderr)
        return 3
    import torch

    from reproduce.resolve import resolve

    if torch.cuda.is_available():
        device, defaults = torch.device("cuda"), GPU_DEFAULTS
    elif opts.allow_cpu:
        device, defaults = torch.device("cpu"), CPU_DEFAULTS
    else:
        print("gpu_throughput: no CUDA device here (torch.cuda.is_available() is False); "
              "run it on an NVIDIA GPU, or pass --allow-cpu for a smoke check on the CPU", file=sys.stderr)
        return 2
    size, batch, steps, warmup = (given if given is not None else default for given, default in
                                  zip((opts.size, opts.batch, opts.steps, opts.warmup), defaults))
    if steps < 1 or warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    modes = MODES if opts.mode == "both" else (opts.mode,)

    print(environment(device))
    print(f"{size}x{size}, batch {batch}, {steps} timed steps after {warmup} warm-up, synthetic data, "
          f"no pretrained weights; cuDNN deterministic as in the job")
    started = time.perf_counter()
    results = []
    for name in opts.runs:
        row = seed_row(name, opts.log)
        for mode in modes:
            overrides = dict(pretrained=False, image_size=size, batch_size=batch, fast=mode == "fast",
                             device=device.type)
            job = resolve(row, overrides).job
            try:
                result = measure(job, device, steps=steps, warmup=warmup)
            except torch.cuda.OutOfMemoryError:
                result = {"run": name, "backbone": job.backbone, "mode": mode, "error": "out of GPU memory"}
            results.append(result)
            print(f"  {job.backbone} {mode}: done in {time.perf_counter() - started:.0f} s", flush=True)

    print()
    print_table(results, speedup=device.type == "cuda")
    if device.type != "cuda":
        print("(CPU smoke check: --fast changes nothing on the CPU, so the modes differ only by noise)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if opts.json:
        opts.json.write_text(json.dumps({"environment": environment(device), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
