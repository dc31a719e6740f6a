"""Row -> job: resolve a logged run's recorded arguments into a complete `Job`.

Each field's value comes from, in increasing precedence: a `default`, the `code-state`
of the row's date, the `recorded` arguments, the row's `notes` (where they state what
the code does not show), and the user's `override`s. Every field keeps its source.
Imports nothing heavy: `ledger reproduce --dry-run` stays fast.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from reproduce.codestate import NOTE_FACTS, CodeState, code_state_for
from reproduce.job import HANDWRITTEN_MODEL, JOB_FIELDS, Conflict, Job, Provenance, ResolvedJob
from reproduce.optim import SUPPORTED_CRITERIA, SUPPORTED_OPTIMIZERS, SUPPORTED_SCHEDULERS

DEFAULTS: dict[str, Any] = dict(
    model=HANDWRITTEN_MODEL, backbone="efficientnet-b7", encoder_weights="imagenet", pretrained=True,
    weights_path=None, weights_sha256=None, num_classes=12,
    criterion1="cross_entropy", criterion2=None, multi_loss=False, loss_weights=(0.5, 0.5),
    focal_gamma=0.0, smooth_factor=0.05,
    optimizer="MADGRAD", lr=1e-4, weight_decay=1e-4, momentum=0.0,
    scheduler="CosineAnnealingLR", t_max=10, eta_min=0.0, scheduler_step="epoch",
    image_size=512, max_train_images=None, max_val_images=None, input_scale="divide255",
    normalize_mean=None, normalize_std=None, histogram_equalization=False,
    hflip_p=0.0, rotate_p=0.0, rotate_limit=45, brightness_contrast_p=0.0,
    cutout_p=0.0, cutout_holes=4, cutout_size=20, clahe_p=0.0, augment_mask=True,
    cutmix=False, cutmix_prob=0.0, cutmix_beta=1.0,
    batch_size=8, val_batch_size=8, num_epochs=20, seed=42, num_workers=4,
    train_drop_last=True, val_drop_last=True, checkpoint_metric="val_miou", log_lr=False,
    device="auto", fast=False, wandb_project="jaesub", wandb_entity="pstage12", wandb_group=None,
)

# Recorded argument -> job field, where the names differ or need translating.
_RENAMED = {"run_name": "wandb_name", "encoder_name": "backbone", "epochs": "num_epochs"}
_SAME = {
    "batch_size", "val_batch_size", "num_epochs", "seed", "lr", "weight_decay", "momentum",
    "criterion1", "criterion2", "multi_loss", "cutmix", "encoder_weights", "optimizer", "scheduler",
    "model", "focal_gamma", "num_workers",
}
KNOWN_ARGUMENTS = tuple(sorted(_SAME | set(_RENAMED) | {"criterion"}))

class ResolveError(ValueError):
    """A row that cannot be turned into a job; the message says which key and why."""


@dataclass(frozen=True)
class RowInput:
    """What resolution needs of a ledger row (kept free of the ORM)."""

    name: str
    date: Optional[str]
    args: Optional[Mapping[str, Any]]
    args_status: str
    args_error: Optional[str] = None
    kind: str = "logged"


def resolve(row: RowInput, overrides: Optional[Mapping[str, Any]] = None, *,
            profile: Optional[Mapping[str, Any]] = None, profile_name: str = "") -> ResolvedJob:
    """Resolve a row into a complete job.

    Args:
        row: the ledger row.
        overrides: `--set key=value` values, by job field name (unknown keys are errors).
        profile: values a profile such as `--data demo` sets; recorded as overrides.
        profile_name: named in those fields' provenance.
    """
    if row.args_status == "none" or row.args is None and row.args_status != "unparsed":
        what = "an ensemble of other runs' predictions" if row.kind == "ensemble" else "a row without arguments"
        raise ResolveError(f"{row.name} has no recorded arguments ({what}): there is no training job to rebuild")
    if row.args_status == "unparsed":
        raise ResolveError(f"{row.name}: its Arguments cell could not be parsed ({row.args_error}); fix the row first")
    if row.args_status != "ok":
        # "loose": keys recovered from free text are good enough to filter on, not to train from.
        raise ResolveError(f"{row.name}: its arguments were read from free text (status {row.args_status}), "
                           "not recorded exactly; there is no exact job to rebuild")

    values: dict[str, Any] = {}
    provenance: dict[str, Provenance] = {}

    def put(field: str, value: Any, source: str, detail: str = "") -> None:
        values[field] = value
        provenance[field] = Provenance(source, detail)  # type: ignore[arg-type]

    for field, value in DEFAULTS.items():
        put(field, value, "default")
    state = code_state_for(row.date)
    for field, value in state.values.items():
        detail = state.commit + (" (inferred)" if field in state.inferred else "")
        put(field, value, "code-state", detail)
    put("code_state", state.commit, "code-state", f"row date {row.date or 'unknown'}: {state.summary}")
    put("run_name", row.name, "recorded", "the row's name")

    _apply_recorded(row, state, put)

    conflicts = []
    for fact in NOTE_FACTS.get(row.name, ()):
        other_value, other = values[fact.field], provenance[fact.field]
        if fact.prefer_notes:
            put(fact.field, fact.value, "notes", fact.quote)
            if other_value != fact.value:
                conflicts.append(Conflict(fact.field, fact.value, "notes", other_value, other.source, fact.why))
        elif other_value != fact.value:
            conflicts.append(Conflict(fact.field, other_value, other.source, fact.value, "notes", fact.why))

    if values.get("wandb_group") is None:
        put("wandb_group", values["model"], "code-state", "W&B group = model")
    if "wandb_name" not in values:
        put("wandb_name", row.name, "default", "the row's name")

    for field, value in (profile or {}).items():
        put(field, value, "override", profile_name or "profile")
    for field, value in (overrides or {}).items():
        check_override_key(field)
        put(field, coerce(field, value), "override", "--set")
    if values.get("weights_path") and provenance["weights_path"].source == "override":
        put("pretrained", True, "override", "--weights")

    _validate(values)
    job = Job(**{field: values[field] for field in JOB_FIELDS})
    return ResolvedJob(job=job, provenance={f: provenance[f] for f in JOB_FIELDS}, conflicts=tuple(conflicts))


def resolve_stored(job_values: Mapping[str, Any], provenance: Mapping[str, Mapping[str, Any]],
                   conflicts: Iterable[Mapping[str, Any]] = (), overrides: Optional[Mapping[str, Any]] = None, *,
                   profile: Optional[Mapping[str, Any]] = None, profile_name: str = "") -> ResolvedJob:
    """A job that was resolved and run before, with further overrides.

    Args:
        job_values: the job's fields, as `Job.to_dict` wrote them.
        provenance: each field's `{"source": ..., "detail": ...}`, as `ResolvedJob.to_dict` wrote it.
        conflicts: the conflicts found when it was first resolved, likewise.
        overrides, profile, profile_name: as for `resolve`.

    Such jobs are kept as they ran; re-resolving their rows' arguments would lose what the
    code state and the notes decided.
    """
    job = Job.from_dict(dict(job_values))
    provenance = {f: Provenance(**p) for f, p in provenance.items()}
    for field in JOB_FIELDS:
        provenance.setdefault(field, Provenance("recorded", "the stored job"))
    conflicts = tuple(Conflict(**{k: v for k, v in c.items() if k != "override"}) for c in conflicts)
    values = job.to_dict()
    for field, value in (profile or {}).items():
        values[field] = value
        provenance[field] = Provenance("override", profile_name or "profile")
    for field, value in (overrides or {}).items():
        check_override_key(field)
        values[field] = coerce(field, value)
        provenance[field] = Provenance("override", "--set")
    _validate(values)
    return ResolvedJob(job=Job.from_dict(values), provenance={f: provenance[f] for f in JOB_FIELDS},
                       conflicts=conflicts)


def _apply_recorded(row: RowInput, state: CodeState, put: Any) -> None:
    args = dict(row.args or {})
    unknown = sorted(k for k in args if k not in _SAME and k not in _RENAMED and k != "criterion")
    if unknown:
        raise ResolveError(
            f"{row.name}: recorded argument(s) {', '.join(unknown)} have no meaning in the reproduction, "
            f"which would silently differ; known arguments: {', '.join(KNOWN_ARGUMENTS)}"
        )
    for key, value in args.items():
        field = _RENAMED.get(key, key)
        if key == "criterion":
            parts = [p.strip() for p in str(value).split("+")]
            if len(parts) > 2:
                raise ResolveError(f"{row.name}: criterion={value!r} combines more than two losses")
            put("criterion1", _criterion(row.name, "criterion", parts[0]), "recorded", f"criterion={value!r}")
            if len(parts) == 2:
                put("criterion2", _criterion(row.name, "criterion", parts[1]), "recorded", f"criterion={value!r}")
                put("multi_loss", True, "recorded", f"criterion={value!r}: a sum of two losses")
            continue
        if field in ("criterion1", "criterion2"):
            value = None if value is None else _criterion(row.name, key, value)
        elif field == "optimizer":
            value = _choice(row.name, key, value, SUPPORTED_OPTIMIZERS)
        elif field == "scheduler":
            value = None if value in (None, "None", "none") else _choice(row.name, key, value, SUPPORTED_SCHEDULERS)
        elif field == "model":
            value = HANDWRITTEN_MODEL if str(value).lower() == "deeplabv3" else str(value)
        elif field == "cutmix":
            value = bool(value)
        put(field, coerce(field, value), "recorded", f"{key}={value!r}")
    if args.get("model") and str(args["model"]).lower() != "deeplabv3" and "encoder_name" not in args:
        raise ResolveError(f"{row.name}: model={args['model']!r} is a segmentation-models-pytorch model; "
                           "its row must also record encoder_name")


def _criterion(run: str, key: str, value: Any) -> str:
    name = str(value).strip().lower().replace("-", "_")
    aliases = {"ce": "cross_entropy", "crossentropy": "cross_entropy", "smoothing": "label_smoothing",
               "soft_ce": "label_smoothing", "focal_loss": "focal", "dice_loss": "dice"}
    name = aliases.get(name, name)
    if name not in SUPPORTED_CRITERIA:
        raise ResolveError(f"{run}: {key}={value!r} is not a supported loss; supported: {', '.join(SUPPORTED_CRITERIA)}")
    return name


def _choice(run: str, key: str, value: Any, supported: tuple[str, ...]) -> str:
    for name in supported:
        if str(value).lower() == name.lower():
            return name
    raise ResolveError(f"{run}: {key}={value!r} is not supported; supported: {', '.join(supported)}")


def check_override_key(field: str) -> None:
    if field not in JOB_FIELDS or field in ("run_name", "code_state"):
        known = ", ".join(f for f in JOB_FIELDS if f not in ("run_name", "code_state"))
        raise ResolveError(f"unknown job key {field!r}; known keys: {known}")


_FIELD_TYPES = typing.get_type_hints(Job)


def coerce(field: str, value: Any) -> Any:
    """A value for `field` of the job's declared type, or a ResolveError saying why not."""
    hint = _FIELD_TYPES[field]
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0]
        origin = typing.get_origin(hint)
    if value is None or (isinstance(value, str) and value in ("None", "none") and optional):
        if optional:
            return None
        raise ResolveError(f"{field} cannot be None")
    try:
        if origin is typing.Literal:
            if value not in typing.get_args(hint):
                raise ValueError(f"one of {', '.join(map(str, typing.get_args(hint)))}")
            return value
        if origin is tuple:
            items = list(value)
            size = len(typing.get_args(hint))
            if len(items) != size:
                raise ValueError(f"{size} numbers")
            return tuple(float(v) for v in items)
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError("True or False")
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("an integer")
            return _number(int, value, "an integer")
        if hint is float:
            if isinstance(value, bool):
                raise ValueError("a number")
            return _number(float, value, "a number")
        if hint is str:
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ResolveError(f"{field}={value!r}: expected {exc}") from None
    return value


def _number(kind: type, value: Any, what: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(what) from None


# Numeric fields and the values they may take: (lowest, highest, lowest allowed itself).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, True), "momentum": (0.0, 1.0, True),
    "eta_min": (0.0, math.inf, True), "focal_gamma": (0.0, math.inf, True), "smooth_factor": (0.0, 1.0, True),
    "cutmix_beta": (0.0, math.inf, False), "rotate_limit": (0, 180, True), "cutout_holes": (0, math.inf, True),
    "cutout_size": (1, math.inf, True), "num_workers": (0, math.inf, True), "num_classes": (2, math.inf, True),
}


def _validate(values: dict[str, Any]) -> None:
    for field, (low, high, low_ok) in _RANGES.items():
        value = values[field]
        if not math.isfinite(value) or value > high or value < low or (value == low and not low_ok):
            bound = f"at least {low:g}" if low_ok else f"more than {low:g}"
            upper = f" and at most {high:g}" if math.isfinite(high) else ""
            raise ResolveError(f"{field} must be a finite number {bound}{upper}, not {value!r}")
    for field in ("loss_weights", "normalize_mean", "normalize_std"):
        if values[field] is not None and not all(math.isfinite(v) for v in values[field]):
            raise ResolveError(f"{field} must hold finite numbers, not {values[field]!r}")
    for field in ("max_train_images", "max_val_images"):
        if values[field] is not None and values[field] < 1:
            raise ResolveError(f"{field} must be at least 1 (or None for all), not {values[field]}")
    for field in ("criterion1", "criterion2"):
        if values[field] is not None and values[field] not in SUPPORTED_CRITERIA:
            raise ResolveError(f"{field}={values[field]!r} is not supported; supported: {', '.join(SUPPORTED_CRITERIA)}")
    if values["multi_loss"] and values["criterion2"] is None:
        raise ResolveError("multi_loss=True needs criterion2")
    if values["optimizer"] not in SUPPORTED_OPTIMIZERS:
        raise ResolveError(f"optimizer={values['optimizer']!r} is not supported; supported: {', '.join(SUPPORTED_OPTIMIZERS)}")
    if values["scheduler"] is not None and values["scheduler"] not in SUPPORTED_SCHEDULERS:
        raise ResolveError(f"scheduler={values['scheduler']!r} is not supported; supported: {', '.join(SUPPORTED_SCHEDULERS)}")
    for field in ("batch_size", "val_batch_size", "num_epochs", "t_max", "image_size"):
        if values[field] < 1:
            raise ResolveError(f"{field} must be at least 1, not {values[field]}")
    for field in ("hflip_p", "rotate_p", "brightness_contrast_p", "cutout_p", "clahe_p", "cutmix_prob"):
        if not 0.0 <= values[field] <= 1.0:
            raise ResolveError(f"{field} is a probability, not {values[field]}")
    if values["clahe_p"] > 0 and values["input_scale"] != "uint8":
        raise ResolveError("clahe_p > 0 needs input_scale='uint8' (CLAHE works on 8-bit images)")
    if values["image_size"] % 32:
        raise ResolveError(f"image_size must be a multiple of 32 (the backbone's stride), not {values['image_size']}")


def provenance_rows(resolved: ResolvedJob) -> list[tuple[str, Any, str, str]]:
    """(field, value, source, detail) for display, in the job's field order."""
    job = resolved.job.to_dict()
    return [(f, job[f], resolved.provenance[f].source, resolved.provenance[f].detail) for f in JOB_FIELDS]
