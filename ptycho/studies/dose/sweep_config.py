"""Settings of the dose sweep (issue 21 item 3; ledger STUDY-SWEEP-001): doses x methods x seeds, each (dose,
method, seed) an arm of the study of that seed (``SweepConfig.seed_config``). Split from ``config`` so that no
module is over 450 lines (issue 22); importing it does no work.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ptycho.studies.dose.config import SPLITS, SWEEP_METHODS, StudyConfig, arm_method, is_int, sweep_arm

#: The sweep's default doses (photons per pattern) and seeds (``--preset sweep``).
SWEEP_DOSES: tuple[float, ...] = (1e3, 1e4, 1e5, 1e6, 1e7, 1e9)
SWEEP_SEEDS: tuple[int, ...] = (0, 1, 2)
SWEEP_PRESET = "sweep"
DEFAULT_SWEEP_OUTPUT_DIR = "runs/dose_sweep"
#: ``StudyConfig`` settings the sweep sets itself for each seed (the rest come from ``SweepConfig.study``).
SWEEP_OWNED_SETTINGS = ("output_dir", "seed", "arms", "force")


@dataclass(frozen=True)
class SweepConfig:
    """Settings of a dose sweep: every method of ``methods`` at every dose of ``doses`` for every seed of ``seeds``.

    Each (dose, method, seed) is one arm of the study, run and stored by the study's own machinery: seed ``s``
    is the study ``seed_config(s)`` (``output_dir/seed<s>``, so its object, positions and noise streams are the
    study's for that seed: SEED-STREAMS-001) and the arm is ``sweep_arm(dose, method)`` in it, reused when
    complete with the same fingerprint (STUDY-RERUN-001, STUDY-REFINE-REUSE-001). Doses are sorted ascending,
    seeds and methods put in canonical order; 'nll_refined' brings the 'nll' arm it starts from.
    ``study``: further ``StudyConfig`` keyword settings (``preset``, default 'sweep', ``nepochs``, ``N``, ...),
    all but ``SWEEP_OWNED_SETTINGS``. Invalid values raise ``ValueError`` naming the option.
    """

    output_dir: Path
    doses: tuple[float, ...] = SWEEP_DOSES
    seeds: tuple[int, ...] = SWEEP_SEEDS
    methods: tuple[str, ...] = SWEEP_METHODS
    force: bool = False
    study: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir):
            self._fail("output_dir", f"must be a non-empty path, got {self.output_dir!r}")
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "doses", self._normalise_doses(self.doses))
        object.__setattr__(self, "seeds", self._normalise_seeds(self.seeds))
        object.__setattr__(self, "methods", self._normalise_methods(self.methods))
        if not isinstance(self.force, bool):
            self._fail("force", f"must be a bool, got {self.force!r}")
        if not isinstance(self.study, Mapping):
            self._fail("study", f"must be a mapping of StudyConfig settings, got {self.study!r}")
        known = {f.name for f in dataclasses.fields(StudyConfig)} - set(SWEEP_OWNED_SETTINGS)
        unknown = sorted(set(self.study) - known)
        if unknown:
            self._fail("study", f"unknown or sweep-owned setting(s) {unknown}; choose from {sorted(known)}")
        object.__setattr__(self, "study", {"preset": SWEEP_PRESET, **self.study})
        for seed in self.seeds:  # surface simulation/training errors now, before any work
            config = self.seed_config(seed)
            for arm in self.arms():
                for split in SPLITS:
                    config.simulation_config(arm, split)
                if arm_method(arm) == "network":
                    config.training_config(arm)
                else:
                    config.refine_config(arm)

    def _fail(self, name: str, message: str) -> None:
        raise ValueError(f"SweepConfig.{name} (--{name.replace('_', '-')}): {message}")

    def _normalise_doses(self, doses: Any) -> tuple[float, ...]:
        if isinstance(doses, (str, bytes)) or not hasattr(doses, "__iter__"):
            self._fail("doses", f"must be a sequence of numbers of photons, got {doses!r}")
        values = list(doses)
        if not values:
            self._fail("doses", "must name at least one dose")
        for dose in values:
            if isinstance(dose, bool) or not isinstance(dose, (int, float, np.integer, np.floating)) \
                    or not (math.isfinite(dose) and dose > 0):
                self._fail("doses", f"a dose must be a finite number of photons > 0, got {dose!r}")
        values = [float(d) for d in values]
        if len(set(values)) != len(values):
            self._fail("doses", f"a dose is given twice in {values}")
        return tuple(sorted(values))

    def _normalise_seeds(self, seeds: Any) -> tuple[int, ...]:
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
            self._fail("seeds", f"must be a sequence of non-negative ints, got {seeds!r}")
        values = list(seeds)
        if not values:
            self._fail("seeds", "must name at least one seed")
        bad = [s for s in values if not is_int(s) or s < 0]
        if bad:
            self._fail("seeds", f"a seed must be a non-negative int, got {bad[0]!r}")
        if len(set(values)) != len(values):
            self._fail("seeds", f"a seed is given twice in {values}")
        return tuple(sorted(int(s) for s in values))

    def _normalise_methods(self, methods: Any) -> tuple[str, ...]:
        if isinstance(methods, str):
            methods = [methods]
        try:
            names = [m.strip() for item in methods for m in str(item).split(",") if m.strip()]
        except TypeError:
            self._fail("methods", f"must be a sequence of method names, got {methods!r}")
        if "all" in names:
            names = list(SWEEP_METHODS)
        unknown = sorted(set(names) - set(SWEEP_METHODS))
        if unknown:
            self._fail("methods", f"unknown method(s) {unknown}; choose from {list(SWEEP_METHODS)} or 'all'")
        if not names:
            self._fail("methods", "must name at least one method")
        return tuple(m for m in SWEEP_METHODS if m in names)

    def seed_config(self, seed: int) -> StudyConfig:
        """The study of seed ``seed``: its arms live in ``output_dir/seed<seed>``."""
        return StudyConfig(output_dir=self.output_dir / f"seed{seed}", seed=seed, force=self.force, **self.study)

    def arms(self) -> tuple[str, ...]:
        """Every arm a seed runs, in run order: dose by dose (ascending), the methods and what they start from."""
        methods = set(self.methods) | ({"nll"} if "nll_refined" in self.methods else set())
        return tuple(sweep_arm(d, m) for d in self.doses for m in SWEEP_METHODS if m in methods)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings: the sweep's and those of its studies (the seed-``seeds[0]`` study's, less its seed
        and output directory)."""
        study = self.seed_config(self.seeds[0]).as_dict()
        for name in SWEEP_OWNED_SETTINGS:
            study.pop(name, None)
        return {"output_dir": str(self.output_dir), "doses": list(self.doses), "seeds": list(self.seeds),
                "methods": list(self.methods), "force": self.force, "study": study}
