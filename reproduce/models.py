"""The segmentation models the log's jobs trained.

"DeepLabV3" in the log is not segmentation-models-pytorch's class but a hand-written
DeepLabV3 head on an EfficientNet used as a plain stride-32 feature extractor (see
PROVENANCE.md). `build_model` rebuilds it exactly; any other model name goes to
`segmentation_models_pytorch.create_model`.

Imported only by the commands that train: it imports torch at once, and timm and
segmentation-models-pytorch on first use.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from reproduce.hashing import file_sha256
from reproduce.job import HANDWRITTEN_MODEL, Job

PROJECTION_CHANNELS = 512
ASPP_CHANNELS = 256
ATROUS_RATES = (6, 12, 18)

# The log's timm backbones under their timm 1.x names (the old names still resolve, with
# a deprecation warning).
TIMM_BACKBONES = {
    "tf_efficientnet_b7_ns": "tf_efficientnet_b7.ns_jft_in1k",
    "tf_efficientnet_b5_ns": "tf_efficientnet_b5.ns_jft_in1k",
    "tf_efficientnet_b7.ns_jft_in1k": "tf_efficientnet_b7.ns_jft_in1k",
    "tf_efficientnet_b5.ns_jft_in1k": "tf_efficientnet_b5.ns_jft_in1k",
}
# Served by segmentation-models-pytorch's copy of the efficientnet_pytorch package.
SMP_EFFICIENTNET_BACKBONES = ("efficientnet-b7",)
DEEPLAB_BACKBONES = SMP_EFFICIENTNET_BACKBONES + tuple(TIMM_BACKBONES)

# A backbone file may carry the ImageNet classifier the feature extractor throws away.
_CLASSIFIER_PREFIXES = ("_fc.", "fc.", "classifier.", "last_linear.")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but could not be downloaded."""


class WeightsMismatch(ValueError):
    """A local weights file does not fit the backbone it is loaded into."""


def build_model(job: Job) -> nn.Module:
    """Build the job's model on the CPU.

    Args:
        job: the resolved job. Uses `model`, `backbone`, `num_classes`, `pretrained`,
            `encoder_weights`, `weights_path` and `weights_sha256`. A local weights file
            is used only when `pretrained` is true; `pretrained=False` never touches the
            network.

    Raises:
        ValueError: unknown model, backbone or encoder weights.
        WeightsMismatch: the local weights file has missing, unexpected or misshapen keys.
        WeightsUnavailable: pretrained weights could not be downloaded.
    """
    if job.model.lower() == HANDWRITTEN_MODEL.lower():
        backbone = build_deeplab_backbone(job)
        return EfficientNetDeepLabV3(backbone, job.num_classes)
    return _build_smp_model(job)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters in `model` (all of them are trained here)."""
    return sum(p.numel() for p in model.parameters())


def backbone_weight_url(job: Job) -> Optional[str]:
    """Where a download of the job's pretrained backbone weights would come from.

    None when nothing would be downloaded: `pretrained` is false or a local
    `weights_path` is given.
    """
    if not job.pretrained or job.weights_path:
        return None
    if job.model.lower() == HANDWRITTEN_MODEL.lower():
        if job.backbone in TIMM_BACKBONES:
            return _timm_weight_url(TIMM_BACKBONES[job.backbone])
        if job.backbone in SMP_EFFICIENTNET_BACKBONES:
            return _smp_weight_url(job.backbone, job.encoder_weights or "imagenet")
        raise ValueError(_unknown_backbone_message(job.backbone))
    _check_smp_encoder(job.backbone)
    if job.backbone.startswith("tu-"):
        return _timm_weight_url(job.backbone[3:])
    return _smp_weight_url(job.backbone, _smp_encoder_weights(job))


# The hand-written DeepLabV3.


class EfficientNetDeepLabV3(nn.Module):
    """DeepLabV3 head on a stride-32 backbone that ends in a 512-channel projection."""

    def __init__(self, backbone: nn.Sequential, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = DeepLabHead(PROJECTION_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.head(self.backbone(x))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation if kernel_size == 3 else 0,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = super().forward(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    def __init__(self, in_channels: int, out_channels: int = ASPP_CHANNELS, rates=ATROUS_RATES):
        super().__init__()
        branches = [_conv_bn_relu(in_channels, out_channels, 1)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, dilation=rate) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabHead(nn.Sequential):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(
            ASPP(in_channels),
            _conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS, 3),
            nn.Conv2d(ASPP_CHANNELS, num_classes, 1),
        )


def build_deeplab_backbone(job: Job) -> nn.Sequential:
    """The EfficientNet feature extractor of the log's DeepLabV3, projection included.

    A plain `nn.Sequential` whose children keep the library's names, so that its
    state_dict (projection aside) reads like the library's own weights file:
    efficientnet-b7 -> `_conv_stem, _bn0, _blocks, _conv_head, _bn1, projection`
    (no activation after either BN: the original bypassed the package's `forward()`);
    timm -> `conv_stem, bn1, blocks, conv_head, bn2, projection` (timm 1.x keeps the
    SiLU inside `bn1`/`bn2`).

    Args:
        job: uses `backbone`, `pretrained`, `encoder_weights`, `weights_path`, `weights_sha256`.
    """
    if job.backbone in SMP_EFFICIENTNET_BACKBONES:
        net = _smp_efficientnet(job)
        layers = [
            ("_conv_stem", net._conv_stem),
            ("_bn0", net._bn0),
            # Called with one argument, the blocks skip drop-connect, as in the original.
            ("_blocks", nn.Sequential(*net._blocks)),
            ("_conv_head", net._conv_head),
            ("_bn1", net._bn1),
        ]
        features = net._bn1.num_features
    elif job.backbone in TIMM_BACKBONES:
        net = _timm_efficientnet(job)
        layers = [
            ("conv_stem", net.conv_stem),
            ("bn1", net.bn1),
            ("blocks", net.blocks),
            ("conv_head", net.conv_head),
            ("bn2", net.bn2),
        ]
        features = net.num_features
    else:
        raise ValueError(_unknown_backbone_message(job.backbone))
    layers.append(("projection", nn.Conv2d(features, PROJECTION_CHANNELS, 1, bias=False)))
    return nn.Sequential(OrderedDict(layers))


def _smp_efficientnet(job: Job) -> nn.Module:
    from segmentation_models_pytorch.encoders import encoders, get_encoder

    weights = job.encoder_weights or "imagenet"
    if job.pretrained and not job.weights_path:
        known = encoders[job.backbone]["pretrained_settings"]
        if weights not in known:
            raise ValueError(
                f"unknown weights {weights!r} for {job.backbone}; known: {', '.join(known)}"
            )
        prefer_cache_when_offline()
        try:
            return get_encoder(job.backbone, weights=weights)
        except Exception as exc:
            raise _unavailable(job.backbone) from exc
    net = get_encoder(job.backbone, weights=None)
    if job.pretrained:
        load_weights_file(net, job.weights_path, job.weights_sha256)
    return net


def _timm_efficientnet(job: Job) -> nn.Module:
    import timm

    name = TIMM_BACKBONES[job.backbone]
    # The default 1000-class classifier is built, as the original did, so that the
    # random stream (and so the head's initialisation) matches; it is never used.
    download = job.pretrained and not job.weights_path
    if download:
        prefer_cache_when_offline()
    try:
        net = timm.create_model(name, pretrained=download, drop_path_rate=0.0)
    except Exception as exc:
        if download:
            raise _unavailable(job.backbone) from exc
        raise
    if job.pretrained and job.weights_path:
        load_weights_file(net, job.weights_path, job.weights_sha256)
    return net


# Weights.


def load_weights_file(module: nn.Module, path: str, sha256: Optional[str] = None) -> None:
    """Load a local state_dict, in the library's own naming, into `module`.

    Keys must match exactly, except an ImageNet classifier (`_fc.*`, `classifier.*`,
    ...) that either side may lack and BatchNorm's `num_batches_tracked` counters.

    Args:
        module: the library's backbone, before it is taken apart.
        path: the file written by `torch.save(state_dict)`.
        sha256: when given, the file's expected sha256 (hex).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"weights file not found: {file}")
    if sha256:
        digest = file_sha256(file)
        if digest != sha256.lower():
            raise WeightsMismatch(f"{file}: sha256 is {digest}, expected {sha256}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatch(f"{file} does not hold a plain state_dict (a mapping of names to tensors)")

    expected = module.state_dict()
    missing = sorted(k for k in expected.keys() - state.keys() if not _ignorable(k))
    unexpected = sorted(k for k in state.keys() - expected.keys() if not _ignorable(k))
    misshapen = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in state.keys() & expected.keys()
        if state[k].shape != expected[k].shape and not _ignorable(k)
    )
    if missing or unexpected or misshapen:
        parts = [
            f"{label} ({len(keys)}): {_preview(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
            if keys
        ]
        raise WeightsMismatch(f"{file} does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(
        {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}, strict=False
    )


def _ignorable(key: str) -> bool:
    return key.startswith(_CLASSIFIER_PREFIXES) or key.endswith("num_batches_tracked")


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def prefer_cache_when_offline() -> None:
    """Without a route to the weights hub, use only its local cache.

    huggingface_hub otherwise retries for about a minute before giving up; a failed
    name lookup of the hub answers in milliseconds, and cached weights still load.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        constants.HF_HUB_OFFLINE = True


def _unavailable(name: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"pretrained weights for {name} could not be downloaded; pass --weights PATH or --no-pretrained"
    )


def _unknown_backbone_message(name: str) -> str:
    return f"unknown DeepLabV3 backbone {name!r}; known: {', '.join(DEEPLAB_BACKBONES)}"


def _timm_weight_url(name: str) -> Optional[str]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return None
    # timm 1.x fetches from the Hugging Face hub when the config names a hub repo.
    if cfg.hf_hub_id:
        return f"https://huggingface.co/{cfg.hf_hub_id}"
    return cfg.url


def _smp_weight_url(encoder: str, weights: Optional[str]) -> Optional[str]:
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get(weights)
    if settings is None:
        return None
    return f"https://huggingface.co/{settings['repo_id']}/resolve/{settings['revision']}/model.safetensors"


# Any other model: segmentation-models-pytorch.


def _build_smp_model(job: Job) -> nn.Module:
    import segmentation_models_pytorch as smp

    archs = {cls.__name__.lower(): cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}
    if job.model.lower() not in archs:
        raise ValueError(
            f"unknown model {job.model!r}; known: DeepLabV3 (the log's own), "
            + ", ".join(name for name in archs.values() if name != "DeepLabV3")
        )
    _check_smp_encoder(job.backbone)
    weights = _smp_encoder_weights(job) if job.pretrained and not job.weights_path else None
    if weights is not None:
        prefer_cache_when_offline()
    try:
        model = smp.create_model(
            arch=job.model,
            encoder_name=job.backbone,
            encoder_weights=weights,
            classes=job.num_classes,
        )
    except Exception as exc:
        if weights is not None:
            raise _unavailable(job.backbone) from exc
        raise
    if job.pretrained and job.weights_path:
        load_weights_file(model.encoder, job.weights_path, job.weights_sha256)
    return model


def _check_smp_encoder(name: str) -> None:
    from segmentation_models_pytorch.encoders import get_encoder_names

    if name.startswith("tu-"):
        import timm

        if timm.is_model(name[3:]):
            return
        close = difflib.get_close_matches(name[3:], timm.list_models(), n=5)
        raise ValueError(f"unknown timm encoder {name!r}; closest timm models: {', '.join(close) or 'none'}")
    known = get_encoder_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5)
        raise ValueError(
            f"unknown encoder {name!r}; closest: {', '.join(close) or 'none'}; "
            f"known: {', '.join(known)}, or tu-<timm model>"
        )


def _smp_encoder_weights(job: Job) -> Optional[str | bool]:
    """The job's encoder weights as segmentation-models-pytorch names them.

    smp 0.6 still calls the log's 'noisy-student' weights 'noisy-student' for the
    timm-efficientnet encoders, so names pass through; they are checked here so that
    a wrong name is not reported as a failed download.
    """
    from segmentation_models_pytorch.encoders import encoders

    weights = job.encoder_weights or "imagenet"
    if job.backbone.startswith("tu-"):
        # The timm tag lives in the encoder name; smp only wants "download or not".
        return True
    known = encoders[job.backbone]["pretrained_settings"]
    if weights not in known:
        raise ValueError(f"unknown encoder weights {weights!r} for {job.backbone}; known: {', '.join(known)}")
    return weights
