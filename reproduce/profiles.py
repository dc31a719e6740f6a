"""Demo profiles: what `--data demo` trains on, and how the job is scaled down for it.

The real competition data is not public, so a demo run trains on a synthetic set in the
same COCO layout (`reproduce.demo`). A profile is one named object holding both halves
of the change: the shape of that data (images per split, object sizes and counts, noise)
and the job fields it overrides (image size, epochs, batch, learning rate...). Every
job field it sets is recorded as an override with the profile's name as its detail, and
the data parameters are stored with the run's data record, so a demo run says exactly
how it differs from the logged one.

`--data demo` is `DEMO`; `--data demo:tiny` is `TINY`, the few-second profile the tests
use. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

DEMO_SPEC = "demo"


@dataclass(frozen=True)
class DemoProfile:
    """A named demo profile.

    Attributes:
        name: the part after `demo:` (`demo` itself for the default).
        about: one line for `--help` and the README.
        data: keyword arguments of `reproduce.demo.make_demo_dataset` (the image side
            comes from the job's `image_size`).
        job: job fields and the values the profile gives them.
    """

    name: str
    about: str
    data: Mapping[str, Any] = field(default_factory=dict)
    job: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        return DEMO_SPEC if self.name == DEMO_SPEC else f"{DEMO_SPEC}:{self.name}"

    @property
    def label(self) -> str:
        """How a field's provenance names it: `--data demo profile`."""
        return f"--data {self.spec} profile"


# Measured on a 2-core CPU (README "The demo profile"): see there for the table of the
# profiles tried and what each learned in how long.
DEMO = DemoProfile(
    name=DEMO_SPEC,
    about="one large object per image, 128 px, 10 epochs of batch 8 at lr 1e-3; the row's own architecture",
    data=dict(n_train=48, n_val=16, n_test=8, max_objects=1, radius=(0.25, 0.45), noise=1.0),
    job=dict(image_size=128, num_epochs=10, batch_size=8, val_batch_size=8, lr=1e-3, num_workers=0,
             pretrained=False),
)

TINY = DemoProfile(
    name="tiny",
    about="a few 64 px images, 2 epochs: seconds, for tests and for trying the pipeline",
    data=dict(n_train=8, n_val=4, n_test=2),
    job=dict(image_size=64, num_epochs=2, batch_size=2, val_batch_size=2, num_workers=0, pretrained=False),
)

PROFILES: dict[str, DemoProfile] = {p.name: p for p in (DEMO, TINY)}


def demo_profile(spec: Optional[str]) -> Optional[DemoProfile]:
    """The profile `--data SPEC` names (`demo`, `demo:tiny`), or None when SPEC is a folder.

    Raises:
        ValueError: `demo:NAME` with a NAME no profile has.
    """
    if not spec or not (spec == DEMO_SPEC or spec.startswith(DEMO_SPEC + ":")):
        return None
    name = spec.partition(":")[2] or DEMO_SPEC
    if name not in PROFILES:
        known = ", ".join(p.spec for p in PROFILES.values())
        raise ValueError(f"--data {spec}: no such demo profile; known: {known}")
    return PROFILES[name]
