"""Does the package reconstruct what users bring? One JSON line per case (issue 20's generality table).

Protocol per case (the study's): simulate a 512-position training scan of an object, train the package's
default network on it (no ground truth), and evaluate on a separate 512-position scan of the same object
and on a scan of a new object of the same kind. Reported for each: amplitude (and, where the truth has
phase, phase) SSIM of the untrained network, the trained network, the trained network followed by
``--refine`` iterations of ``ptycho.refine`` (PINN + refinement), and ``ptycho.refine`` from ones with the
same iterations (the iterative baseline); epochs run and wall times.

Probes: 'focused' (the default disk), 'defocused' (the study's), 'star' (tike's experimental Siemens-star
probe, tests/fixtures/siemens_star_subset.npz.bz2, resampled to N by cropping its far field and scaled
to the default probe's power).

    python scripts/generality.py                       # all 13 cases
    python scripts/generality.py --cases focused-lines-g2-N64-1e9 --epochs 4
    python scripts/generality.py --table runs/generality.jsonl   # the README's markdown table
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAR = ROOT / "tests" / "fixtures" / "siemens_star_subset.npz.bz2"


@dataclass(frozen=True)
class Case:
    probe: str  # 'focused' | 'defocused' | 'star'
    object_kind: str  # 'lines' | 'grf_complex'
    gridsize: int = 2
    N: int = 64
    nphotons: float = 1e9

    @property
    def name(self) -> str:
        obj = "grf" if self.object_kind == "grf_complex" else self.object_kind
        return f"{self.probe}-{obj}-g{self.gridsize}-N{self.N}-{self.nphotons:.0e}".replace("+0", "")


CASES = ([Case(p, o) for p in ("focused", "defocused", "star") for o in ("lines", "grf_complex")]
         + [Case("focused", o, gridsize=1) for o in ("lines", "grf_complex")]
         + [Case(p, "grf_complex", nphotons=1e4) for p in ("focused", "defocused", "star")]
         + [Case("focused", "grf_complex", N=32), Case("focused", "grf_complex", N=128)])


def star_probe(N: int) -> np.ndarray:
    """tike's experimental probe at side N (its far field cropped or zero-padded to N), default-probe power."""
    from ptycho.config import SimulationConfig
    from ptycho.formats import read
    from ptycho.simulate import default_probe

    probe = read(STAR, "tike").probe
    far = np.fft.fftshift(np.fft.fft2(probe, norm="ortho"))
    n0 = far.shape[0]
    if N <= n0:
        start = (n0 - N) // 2
        far = far[start:start + N, start:start + N]
    else:
        pad = (N - n0) // 2
        far = np.pad(far, pad)
    probe = np.fft.ifft2(np.fft.ifftshift(far), norm="ortho")
    power = np.sum(np.abs(default_probe(SimulationConfig(N=N))) ** 2)
    return (probe * math.sqrt(power / np.sum(np.abs(probe) ** 2))).astype(np.complex64)


def simulation(case: Case, seed: int):
    from ptycho.config import SimulationConfig
    from ptycho.studies.dose.config import STUDY_PROBE_DEFOCUS

    size = max(128, 2 * case.N)
    return SimulationConfig(N=case.N, gridsize=case.gridsize, object_size=size, buffer=15.0 * size / 128,
                            object_kind=case.object_kind, n_positions=512, nphotons=case.nphotons, seed=seed,
                            probe_defocus=STUDY_PROBE_DEFOCUS if case.probe == "defocused" else 0.0)


def scores(rec, truth) -> dict:
    from ptycho.scan_region import evaluate_on_scan

    metrics = evaluate_on_scan(rec, truth).metrics
    out = {"amplitude_ssim": round(float(metrics["amplitude_ssim"]), 4)}
    if metrics.get("phase_ssim") is not None and np.ptp(np.angle(truth)) > 1e-3:
        out["phase_ssim"] = round(float(metrics["phase_ssim"]), 4)
    return out


def run_case(case: Case, epochs: int, refine_iterations: int, seed: int = 0) -> dict:
    from ptycho import workflow
    from ptycho.config import TrainingConfig
    from ptycho.inference import reconstruct
    from ptycho.inputs import NEIGHBOUR_INPUTS, model_inputs, neighbour_count
    from ptycho.model import adapt_input_normalization, create_model_with_gridsize
    from ptycho.refine import RefineConfig, refine, refine_from_best_start
    from ptycho.simulate import simulate_dataset

    probe = star_probe(case.N) if case.probe == "star" else None
    config = simulation(case, seed)
    train = simulate_dataset(config, probe=probe)
    test = simulate_dataset(replace(config, seed=seed + 1000), obj=train.obj, probe=train.probe)
    new = simulate_dataset(replace(config, seed=seed + 2000), probe=train.probe)
    refine_config = RefineConfig(iterations=refine_iterations) if refine_iterations > 0 else None
    result = {"case": case.name, **asdict(case), "epochs_asked": epochs,
              "refine": asdict(refine_config) if refine_config else None}

    _, untrained = create_model_with_gridsize(case.gridsize, case.N, probe=train.probe,
                                              intensity_scale=train.intensity_scale, seed=seed)
    inputs = model_inputs(train, train.intensity_scale, neighbour_count(untrained))
    adapt_input_normalization(untrained, train.X, positions=train.coords_relative,
                              neighbours={k: v for k, v in inputs.items() if k in NEIGHBOUR_INPUTS})
    result["untrained"] = scores(reconstruct(untrained, test, M="auto"), train.obj)

    start = time.perf_counter()
    trained = workflow.train_model(train, TrainingConfig(nepochs=epochs, verbose=0, seed=seed), seed=seed)
    result["train_seconds"] = round(time.perf_counter() - start, 1)
    result["epochs_run"] = trained.history["epochs_run"]
    for label, data in (("test", test), ("new_object", new)):
        rec = reconstruct(trained.diffraction_to_obj, data, M="auto", intensity_scale=data.intensity_scale)
        result[label] = scores(rec, data.obj)
        if refine_iterations == 0:  # --refine 0: the network alone
            continue
        refined = refine(data, refine_config, initial=rec)
        result[f"{label}_refined"] = scores(refined.reconstruction, data.obj)
        result[f"{label}_refine_seconds"] = round(refined.seconds, 1)
        best, start = refine_from_best_start(data, refine_config, rec)  # what `ptycho reconstruct` writes
        result[f"{label}_best_start"] = {**scores(best.reconstruction, data.obj), "start": start}
    if refine_iterations == 0:
        return result
    baseline = refine(test, refine_config)
    result["iterative_from_ones"] = scores(baseline.reconstruction, test.obj)
    result["iterative_seconds"] = round(baseline.seconds, 1)
    return result


def _cell(scores) -> str:
    if scores is None:
        return "—"
    amp = f"{scores['amplitude_ssim']:.3f}"
    return amp if "phase_ssim" not in scores else f"{amp} / {scores['phase_ssim']:.3f}"


def markdown_table(lines) -> str:
    """The README's table from this script's JSON lines: SSIM amplitude / phase (phase where the truth has it)."""
    head = ("| case | untrained | network | network + refine | iterative from ones | new object: network / "
            "+ refine | epochs, train s |\n|---|---|---|---|---|---|---|")
    rows = []
    for line in lines:
        r = json.loads(line)
        rows.append(f"| {r['case']} | {_cell(r['untrained'])} | {_cell(r['test'])} | {_cell(r.get('test_refined'))} | "
                    f"{_cell(r.get('iterative_from_ones'))} | {_cell(r['new_object'])}; {_cell(r.get('new_object_refined'))} | "
                    f"{r['epochs_run']}, {r['train_seconds']:.0f} |")
    return "\n".join([head, *rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all 13)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per case (batch 16)")
    parser.add_argument("--refine", type=int, default=20, help="refinement iterations (PINN + refinement and baseline); 0: the network alone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--table", metavar="JSONL", default=None, help="print the markdown table of a run's output")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(Path(args.table).read_text().splitlines()))
        return 0
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    names = None if args.cases is None else set(args.cases.split(","))
    unknown = (names or set()) - {c.name for c in CASES}
    if unknown:
        parser.error(f"--cases: unknown case(s) {sorted(unknown)}; --list shows them")
    for case in CASES:
        if names is None or case.name in names:
            print(json.dumps(run_case(case, args.epochs, args.refine, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
