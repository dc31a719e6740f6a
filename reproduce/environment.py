"""Where a job ran: interpreter, torch/CUDA/GPU, library versions, and the project's commit."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

LIBRARIES = (
    "torch", "torchvision", "segmentation-models-pytorch", "timm", "albumentations", "opencv-python-headless",
    "madgrad", "wandb", "numpy", "pycocotools", "ledger",
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The project's commit and whether the working tree had uncommitted changes."""
    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def environment(device: Optional[str] = None) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "device": device,
        "threads": torch.get_num_threads(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "git": git_state(),
    }
