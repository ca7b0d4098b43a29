"""No silent garbage: refuse data the forward model cannot explain, and flag results that cannot be right.

A file in another convention (a probe in unnormalised-FFT units, diffraction with the zero frequency at the
array corner, intensities where amplitudes belong) used to train to a constant object without a word. Two
checks stand guard (ledger FORWARD-MODEL-CHECK-001, TRAINING-WARNINGS-001):

* :func:`check_forward_model`, before training (``ptycho.train.train`` calls it): can the model's forward
  model, ``|F[P·O]|`` with an object amplitude of at most ``object_amplitude_max``, produce the measured
  amplitudes X at all? Raises ``ValueError`` (one line: the file, the measured value, the fix) when it
  cannot; returns warnings for the doubtful cases.
* :func:`training_warnings`, after training: a loss that never moved, or an object stuck at the amplitude
  ceiling or constant.

Measured quantities (X = ``dataset.diffraction``, (M, N, N) amplitudes; P = the probe, (N, N)):

``r = mean_m Σ X_m² / Σ|P|²`` (:func:`probe_power_ratio`)
    With the orthonormal far field (SPEC §3) Σ X_m² = Σ|P·O_m|², so r is the probe-weighted mean |O|² a
    transmission object would need. (The network predicts the object on the central N/2 window of each
    patch only, so the need is, if anything, higher: r is a lower bound and refusing on it is safe.) The
    package's own lines object (amplitude 0.5–1.5) gives r ≈ 1.0–1.4.
``corner/centre`` (:func:`corner_to_centre_ratio`)
    Mean energy per pixel of the mean pattern mean_m X_m² in its four corner blocks (side N/8) over that
    in its central block (side N/4, centred on pixel N/2 where the zero frequency belongs): ≈ 1e-9–1e-2
    for centred data, ≥ 80 for the same data unshifted.

NumPy only; importing this module does no work.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

#: The model's default object amplitude ceiling (``ModelConfig.object_amplitude_max``, AMPLITUDE-RANGE-001).
DEFAULT_AMPLITUDE_MAX = 2.0
#: Refuse when r > POWER_MARGIN · ceiling² (the counts need a mean |O|² above the ceiling, with margin).
POWER_MARGIN = 1.5
#: Warn when the needed mean amplitude sqrt(r) is at least this fraction of the ceiling (and not refused).
#: (ceiling²/4, i.e. half the ceiling, would warn on the package's own lines object, r ≈ 1.0–1.4.)
NEAR_CEILING = 0.75
#: Refuse when r < POWER_RATIO_MIN (the probe is ≥ 1000× too bright); warn below POWER_RATIO_WARN.
POWER_RATIO_MIN = 1e-3
POWER_RATIO_WARN = 0.05
#: Refuse when the corner blocks of the mean pattern hold this many times the centre's energy per pixel.
CORNER_RATIO_MAX = 10.0
#: The training loss "never left its first plateau" when (loss[0] − min loss) ≤ FLAT_LOSS_REL · |loss[0]|.
FLAT_LOSS_REL = 1e-4
#: The validation loss "never moved" when every epoch's value is equal to this many significant digits.
VAL_LOSS_DIGITS = 6
#: The object "sits at the ceiling" when ≥ CEILING_PIXELS of its pixels have amplitude ≥ CEILING_FRACTION · max.
CEILING_FRACTION = 0.98
CEILING_PIXELS = 0.5
#: The object is "constant" when its amplitude's std / mean is below this.
CONSTANT_REL_STD = 1e-3


def _num(value: float) -> str:
    """``value`` to 3 significant digits, without an exponent between 1e-3 and 1e6 (8900, 94, 0.0123)."""
    if not math.isfinite(value):
        return str(value)
    rounded = float(f"{value:.3g}")
    if rounded != 0 and (abs(rounded) >= 1e6 or abs(rounded) < 1e-3):
        return f"{rounded:.3g}"
    return f"{rounded:f}".rstrip("0").rstrip(".")


def _source(source: Optional[str]) -> str:
    return "dataset" if source is None else str(source)


def probe_power_ratio(dataset: Any, probe: Optional[np.ndarray] = None) -> float:
    """r = mean_m Σ X_m² / Σ|P|²: the mean |O|² the data need (inf for a zero probe, nan if both are zero).

    dataset : a ``PtychoDataset`` (uses ``diffraction`` (M, N, N) and, unless ``probe`` is given, ``probe``).
    """
    counts = float(np.mean(np.sum(np.square(np.asarray(dataset.diffraction, np.float64)), axis=(1, 2))))
    power = float(np.sum(np.abs(np.asarray(dataset.probe if probe is None else probe, np.complex128)) ** 2))
    if power == 0:
        return math.nan if counts == 0 else math.inf
    return counts / power


def corner_to_centre_ratio(diffraction: np.ndarray) -> float:
    """Energy per pixel of the mean pattern in its four (N/8)² corner blocks over its central (N/4)² block.

    diffraction : (M, N, N) amplitudes. inf when the centre is dark and a corner is not; nan when both are.
    """
    energy = np.mean(np.square(np.asarray(diffraction, np.float64)), axis=0)
    N = energy.shape[-1]
    b, c = max(1, N // 8), max(1, N // 4)
    corners = np.concatenate([energy[:b, :b].ravel(), energy[:b, -b:].ravel(),
                              energy[-b:, :b].ravel(), energy[-b:, -b:].ravel()])
    start = N // 2 - c // 2
    centre = energy[start:start + c, start:start + c]
    corner_mean, centre_mean = float(np.mean(corners)), float(np.mean(centre))
    if centre_mean == 0:
        return math.nan if corner_mean == 0 else math.inf
    return corner_mean / centre_mean


def check_forward_model(dataset: Any, object_amplitude_max: float = DEFAULT_AMPLITUDE_MAX,
                        source: Optional[str] = None, probe: Optional[np.ndarray] = None) -> list[str]:
    """Can ``|F[P·O]|`` with ``|O| ≤ object_amplitude_max`` explain the measured amplitudes? (module docstring)

    dataset : a ``PtychoDataset``. source : the file name for messages ('dataset' when None).
    probe : (N, N) the probe the model will use, if not ``dataset.probe`` (``ptycho.train.train`` passes the
        model's own).
    Raises ``ValueError`` (one line naming ``source``, the measured value and the fix) when the diffraction or
    the probe is all zero; when r > 1.5·ceiling² (probe too dim for the counts: probably unnormalised-FFT
    units) or r < 1e-3 (probe far too bright); when the corner blocks of the mean pattern hold ≥ 10× the
    energy per pixel of its centre (unshifted diffraction). Returns warnings (one line each): r in
    [1e-3, 0.05) or sqrt(r) ≥ 0.75·ceiling (the object would have to be very dark, or near the ceiling);
    ``nphotons`` None (the dose is unknown, s = 1 assumed).
    """
    src = _source(source)
    amax = float(object_amplitude_max)
    if not math.isfinite(amax) or amax <= 0:
        raise ValueError(f"object_amplitude_max: must be a finite number > 0, got {object_amplitude_max!r}")
    diffraction = np.asarray(dataset.diffraction)
    P = np.asarray(dataset.probe if probe is None else probe)
    N = int(diffraction.shape[-1])
    counts = float(np.mean(np.sum(np.square(diffraction, dtype=np.float64), axis=(1, 2))))
    power = float(np.sum(np.abs(P.astype(np.complex128)) ** 2))
    if counts == 0:
        raise ValueError(f"{src}: the diffraction is all zero (mean Σ X² = 0): there is nothing to reconstruct")
    if power == 0:
        raise ValueError(f"{src}: the probe is all zero (Σ|P|² = 0): no object can explain the measured counts "
                         f"(mean Σ X² = {_num(counts)}); check the file's probe")
    r = counts / power
    needed = math.sqrt(r)
    convert = "convert the file with `ptycho import`"
    if r > POWER_MARGIN * amax ** 2:
        if N / 3 <= needed <= 3 * N:
            fix = (f"the probe is probably in unnormalised-FFT units — multiply it by N = {N}, or convert the file "
                   "with `ptycho import --format tike`")
        else:
            fix = (f"the probe and the diffraction are on different scales — scale the probe by about {_num(needed)} "
                   f"(and check that the file holds amplitudes √counts, not counts), or {convert}")
        raise ValueError(f"{src}: the probe's power (Σ|P|² = {_num(power)}) explains only 1/{_num(r)} of the "
                         f"measured counts (mean Σ X² = {_num(counts)}): an object amplitude of {_num(needed)} would "
                         f"be needed (the model's ceiling is {amax}); {fix}")
    if r < POWER_RATIO_MIN:
        raise ValueError(f"{src}: the probe's power (Σ|P|² = {_num(power)}) is {_num(1 / r)} times the measured "
                         f"counts (mean Σ X² = {_num(counts)}): the object amplitude would have to be "
                         f"{_num(needed)}; "
                         f"the probe is far too bright for the data — divide it by about {_num(1 / needed)} (or "
                         f"check that the diffraction is not normalised), or {convert}")
    corner = corner_to_centre_ratio(diffraction)
    if corner >= CORNER_RATIO_MAX:
        raise ValueError(f"{src}: the diffraction looks unshifted (zero frequency at the array corner): the corner "
                         f"blocks of the mean pattern hold {_num(corner)}× the energy per pixel of its centre; apply "
                         "numpy.fft.fftshift over the last two axes, or use `ptycho import`")
    warnings = []
    if r < POWER_RATIO_WARN:
        warnings.append(f"{src}: the probe's power (Σ|P|² = {_num(power)}) is {_num(1 / r)} times the measured "
                        f"counts (mean Σ X² = {_num(counts)}): the object's mean amplitude would be only "
                        f"{_num(needed)}; check the probe's scale, or {convert}")
    elif needed >= NEAR_CEILING * amax:
        warnings.append(f"{src}: the measured counts need a mean object amplitude of {_num(needed)} (mean Σ X² / "
                        f"Σ|P|² = {_num(r)}), close to the model's ceiling of {amax}: the reconstruction may "
                        "saturate; check the probe's scale, or raise object_amplitude_max")
    if getattr(dataset, "nphotons", None) is None:
        warnings.append(f"{src}: the dose is unknown (no nphotons): s = 1 is assumed, i.e. the amplitudes are taken "
                        "as √counts; if they are not, give the photons per pattern with --nphotons")
    return warnings


def _finite(values: Any) -> list[float]:
    if not isinstance(values, (list, tuple, np.ndarray)):
        return []
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def object_warnings(object_amplitude: Any, amplitude_max: float = DEFAULT_AMPLITUDE_MAX) -> list[str]:
    """Warnings for a reconstructed object that cannot be right (TRAINING-WARNINGS-001 (c)).

    object_amplitude : the stitched object's amplitude (any shape; complex values are taken as |·|; non-finite
        values are ignored). Pass only the covered pixels (uncovered ones are zeros, not data).
    At the ceiling: ≥ 50 % of the pixels ≥ 0.98·``amplitude_max``. Constant: std/mean < 1e-3 (or all zero).
    """
    amp = np.abs(np.asarray(object_amplitude)).astype(np.float64).ravel()
    amp = amp[np.isfinite(amp)]
    if amp.size == 0:
        return []
    warnings = []
    amax = float(amplitude_max)
    at_ceiling = float(np.mean(amp >= CEILING_FRACTION * amax))
    mean, std = float(np.mean(amp)), float(np.std(amp))
    if at_ceiling >= CEILING_PIXELS:
        warnings.append(f"the reconstructed object sits at the amplitude ceiling: {100 * at_ceiling:.0f} % of its "
                        f"{amp.size} pixels have amplitude ≥ {CEILING_FRACTION} × {_num(amax)} (mean {_num(mean)}); "
                        "the probe cannot explain the counts — check the probe's scale against the counts, or the "
                        "data's convention with `ptycho import`")
    if mean == 0 or std / mean < CONSTANT_REL_STD:
        warnings.append(f"the reconstructed object is constant: amplitude std/mean = {_num(std / mean if mean else 0)} "
                        f"(mean {_num(mean)}) over {amp.size} pixels; the network ignored its input — check the "
                        "data's convention with `ptycho import` and the probe's scale")
    return warnings


def training_warnings(history: Mapping[str, Any], object_amplitude: Any = None,
                      amplitude_max: float = DEFAULT_AMPLITUDE_MAX) -> list[str]:
    """Warnings for a training run whose result cannot be right (one line each; empty when none).

    (a) the training loss never left its first plateau: with ≥ 2 finite epochs, the drop from epoch 1 to the
        best epoch, loss[0] − min(loss), is ≤ 1e-4·|loss[0]| (the Poisson deviance and the MAE are ≥ 0 with 0
        a perfect fit, so |loss[0]| is the distance to a perfect fit; NLL-DEVIANCE-001 made this visible).
    (b) ``val_loss`` never moved: ≥ 2 epochs, all finite and equal to 6 significant digits.
    (c) given ``object_amplitude`` (the stitched object, covered pixels): :func:`object_warnings`.
    """
    warnings = []
    loss = _finite(history.get("loss"))
    if len(loss) >= 2 and loss[0] != 0:
        first, best = loss[0], min(loss)
        drop = (first - best) / abs(first)
        if drop <= FLAT_LOSS_REL:
            warnings.append(f"the training loss never left its first plateau: it fell by {_num(max(drop, 0.0))} of "
                            f"its epoch-1 value ({first:.6g} → best {best:.6g}) in {len(loss)} epochs; the model is "
                            "not learning — check the probe's scale and the data's convention (`ptycho import`), or "
                            "the learning rate")
    raw_val = history.get("val_loss")
    val = _finite(raw_val)
    if len(val) >= 2 and len(val) == len(raw_val) and len({f"{v:.{VAL_LOSS_DIGITS}g}" for v in val}) == 1:
        warnings.append(f"the validation loss never moved: {val[0]:.{VAL_LOSS_DIGITS}g} in all {len(val)} epochs "
                        f"(equal to {VAL_LOSS_DIGITS} significant digits), so early stopping and the learning-rate "
                        "schedule saw no progress; check the probe's scale and the data's convention (`ptycho import`)")
    if object_amplitude is not None:
        warnings += object_warnings(object_amplitude, amplitude_max)
    return warnings


def model_amplitude_max(model: Any, default: float = DEFAULT_AMPLITUDE_MAX) -> float:
    """The object amplitude ceiling of a model built by ``ptycho.model`` (its ``object_patches`` layer)."""
    try:
        return float(model.get_layer("object_patches").amplitude_max)
    except (AttributeError, ValueError):
        return float(default)


def neighbour_warnings(neighbour_positions: Any, source: Optional[str] = None, radius: float = 0.0) -> list[str]:
    """A warning when most patterns of a gridsize-1 scan have no scan neighbour to settle their twin image.

    neighbour_positions : (B, 1, 2, K) the model input of that name (``ptycho.inputs.model_inputs``; a pattern
    without a neighbour within ``radius`` px lists itself, offset 0). Warns (one line) when more than half of
    the patterns have none: their retrieval sees one pattern, whose twin image it cannot tell from the object
    (RETRIEVAL-NEIGHBOURS-001).
    """
    offsets = np.asarray(neighbour_positions, np.float64)
    if offsets.size == 0:
        return []
    alone = float(np.mean(np.all(offsets == 0, axis=(1, 2, 3))))
    if alone <= 0.5:
        return []
    return [f"{_source(source)}: {100 * alone:.0f} % of the patterns have no scan neighbour within {radius:g} px, "
            "so at gridsize 1 their twin image is not determined; use --gridsize 2 or a denser scan"]


def log_warnings(logger: Any, warnings: Sequence[str]) -> None:
    """Log each warning (one line) at WARNING level."""
    for message in warnings:
        logger.warning("%s", message)
