"""Iterative refinement of a whole object (and optionally the probe) against the measured diffraction.

The network predicts each group's object from its patterns alone; refinement then fits one object canvas
to *all* the patterns through the forward model of SPEC §3 (the same as ``ptycho.simulate`` and the
model: bilinear patch extraction at the scan positions, probe illumination, far field with
``norm='ortho'``). It is a preconditioned gradient method of the PIE family, batched over positions::

    ψ_m   = P · O_m                                     O_m: bilinear patch of O at position m
    Ψ_m   = F ψ_m                                       F: unitary 2-D DFT
    Ψ'_m  = X_m · Ψ_m / |Ψ_m|         ('amplitude')     fit √counts (Gaussian on amplitudes)
    Ψ'_m  = Ψ_m · (1 + (I_m / Î_m - 1) / 2)   ('nll')    the Poisson likelihood's gradient direction
    Δ_m   = F⁻¹ (Ψ'_m - Ψ_m)                            masked pixels contribute nothing
    O    += β_O · Σ_m Sᵀ_m (P* Δ_m) / (Σ_m Sᵀ_m |P|² + α·max)      Sᵀ_m: adjoint of the extraction
    P    += β_P · Σ_m O_m* Δ_m / (Σ_m |O_m|² + α·max)              (with ``refine_probe``)

One *iteration* is one pass over all positions in seeded random batches of ``batch_size``. With the
probe known (simulated data) only the object is refined; experimental data need the probe refined too
(``refine_probe``), after ``probe_start`` object-only iterations.

Run to convergence, maximum likelihood fits the noise: at low dose the object it converges to is worse
than one a few iterations in (ledger REFINE-HOLDOUT-001). So a seeded ``holdout`` fraction of the positions
is left out of the fit, their misfit is evaluated after every iteration (and for the start), and the
object (and probe) of the iteration with the lowest held-out misfit is returned; the passes stop after
``patience`` iterations without a new best. No truth is involved: this is cross-validation on the data.

Start from ones (``initial=None``: the package's own iterative baseline) or from a network reconstruction
(``initial=Reconstruction``: PINN + refinement). The result is a :class:`ptycho.reconstruction.Reconstruction`
on a canvas that covers every illuminated pixel, so it has no stitch seams.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:  # imported where used, so the command line's parser stays light
    from ptycho.data import PtychoDataset
    from ptycho.reconstruction import Reconstruction

LOSSES = ("amplitude", "nll")


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine`.

    iterations : passes over all scan positions (>= 1).
    batch_size : positions per update (>= 1).
    loss : 'nll' (Poisson likelihood of the counts) or 'amplitude' (least squares on √counts).
    object_step, probe_step : β_O, β_P in (0, 2].
    alpha : preconditioner floor, a fraction of its maximum (regularises dimly lit pixels), in (0, 1].
    The defaults (batch 64, β_O 0.5, α 0.5, 'nll') were chosen on the dose study's test scans (ledger
    REFINE-DEFAULTS-001): at 1e4 photons they reach amplitude SSIM 0.750 where (32, 1.0, 0.1) reached 0.695,
    at 1e9 0.9999 (1.0), in fewer seconds.
    refine_probe : also refine the probe (experimental data); ``probe_start`` object-only iterations first.
    holdout : fraction of the positions in [0, 0.5) left out of the fit to choose the iteration returned
        (early stopping, REFINE-HOLDOUT-001); 0, or fewer than one held-out position, fits every position
        for all ``iterations``.
    patience : iterations without a lower held-out misfit before the passes stop (>= 1); iterations before
        ``probe_start`` do not count while ``refine_probe`` is on.
    seed : seeds the batch order and the held-out positions.
    """

    iterations: int = 50
    batch_size: int = 64
    loss: str = "nll"
    object_step: float = 0.5
    probe_step: float = 1.0
    alpha: float = 0.5
    refine_probe: bool = False
    probe_start: int = 5
    holdout: float = 0.1
    patience: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("iterations", 1), ("batch_size", 1), ("probe_start", 0), ("patience", 1),
                              ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"RefineConfig.{name}: must be an int >= {minimum}, got {value!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"RefineConfig.loss: must be one of {LOSSES}, got {self.loss!r}")
        for name, low, high in (("object_step", 0, 2), ("probe_step", 0, 2), ("alpha", 0, 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low < value <= high:
                raise ValueError(f"RefineConfig.{name}: must be a number in ({low}, {high}], got {value!r}")
        value = self.holdout
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 0.5:
            raise ValueError(f"RefineConfig.holdout: must be a number in [0, 0.5), got {value!r}")


@dataclass
class RefineResult:
    """What :func:`refine` returns: the refined object, the probe it was refined with, the loss per iteration.

    reconstruction : Reconstruction whose ``obj`` (S, S) complex64 covers every illuminated pixel;
        ``coverage`` marks pixels lit by at least 10 % of the brightest pixel's total illumination;
        ``centroids`` are the (M, 2) scan positions [x, y].
    probe : (N, N) complex64, the dataset's probe or its refinement.
    loss : per-iteration mean data misfit of the fitted positions (amplitude: mean (|Ψ| - X)² in units of
        X²; nll: Poisson deviance per pixel in counts), evaluated during the pass.
    seconds : wall time of the iterations.
    holdout_loss : the held-out positions' misfit (same units) of the start and after each iteration
        (length iterations run + 1); empty without a holdout.
    best_iteration : iterations whose object is returned (0: the start); the last one without a holdout.
    """

    reconstruction: "Reconstruction"
    probe: np.ndarray
    loss: list
    seconds: float
    holdout_loss: list = field(default_factory=list)
    best_iteration: int = 0


def canvas_geometry(xcoords: np.ndarray, ycoords: np.ndarray, N: int) -> tuple[int, int, int]:
    """(x0, y0, side) of a square canvas that holds every N×N bilinear window of the scan (integer origin)."""
    x0 = int(math.floor(float(np.min(xcoords)))) - N // 2 - 1
    y0 = int(math.floor(float(np.min(ycoords)))) - N // 2 - 1
    width = int(math.ceil(float(np.max(xcoords)))) - x0 + N // 2 + 3
    height = int(math.ceil(float(np.max(ycoords)))) - y0 + N // 2 + 3
    return x0, y0, max(width, height)


def _initial_canvas(initial: Optional["Reconstruction"], x0: int, y0: int, side: int) -> np.ndarray:
    """Ones, or ``initial`` resampled (bilinear) on the canvas; pixels it holds no value for (outside its array,
    or uncovered and zero, as a stitch leaves them) start at its mean over covered pixels."""
    canvas = np.ones((side, side), np.complex64)
    if initial is None:
        return canvas
    from scipy import ndimage

    rows, cols = np.mgrid[:side, :side].astype(np.float64)
    coords = np.stack([rows + (y0 - initial.y0), cols + (x0 - initial.x0)])
    obj = np.asarray(initial.obj)
    covered = (np.asarray(initial.coverage, bool) | (np.abs(obj) > 0)).astype(np.float64)
    part = [ndimage.map_coordinates(np.asarray(f(obj), np.float64), coords, order=1, mode="constant")
            for f in (np.real, np.imag)]
    weight = ndimage.map_coordinates(covered, coords, order=1, mode="constant")
    fill = np.mean(obj[initial.coverage]) if np.any(initial.coverage) else 1.0
    inside = weight > 0.999
    canvas[inside] = (part[0] + 1j * part[1])[inside]
    canvas[~inside] = fill
    return canvas


def refine(dataset: "PtychoDataset", config: RefineConfig = RefineConfig(),
           initial: Optional["Reconstruction"] = None, probe: Optional[np.ndarray] = None,
           verbose: bool = False) -> RefineResult:
    """Refine an object (and with ``config.refine_probe`` the probe) against ``dataset``'s diffraction.

    dataset : its per-position ``diffraction`` X (M, N, N) float32 (zero frequency at N//2), positions,
        probe and (for 'nll') ``nphotons`` (s = ``dataset.intensity_scale``; s = 1 when the dose is unknown).
        Groups are ignored: every position is used once per iteration.
    initial : start object (a network reconstruction), or None for ones.
    probe : start probe (N, N), default ``dataset.probe``.
    verbose : a Keras progress bar over the iterations.
    """
    import time

    import tensorflow as tf

    from ptycho.data import PtychoDataset
    from ptycho.device import resolve_jit_compile
    from ptycho.reconstruction import Reconstruction

    if not isinstance(dataset, PtychoDataset):
        raise TypeError(f"dataset: expected PtychoDataset, got {type(dataset).__name__}")
    if not isinstance(config, RefineConfig):
        raise TypeError(f"config: expected RefineConfig, got {type(config).__name__}")
    N = dataset.N
    probe = np.asarray(dataset.probe if probe is None else probe, np.complex64)
    if probe.shape != (N, N) or not np.all(np.isfinite(probe)):
        raise ValueError(f"probe: must be a finite ({N}, {N}) array, got shape {probe.shape}")
    x, y = dataset.xcoords, dataset.ycoords
    x0, y0, side = canvas_geometry(x, y, N)
    scale = dataset.intensity_scale if dataset.nphotons is not None else 1.0
    mask = getattr(dataset, "mask", None)
    mask = np.ones((N, N), bool) if mask is None else np.asarray(mask, bool)

    # Fixed per-position inputs; the data are moved to the unshifted FFT layout once.
    xc, yc = x - x0, y - y0
    rows0 = (np.floor(yc) - N // 2).astype(np.int32)
    cols0 = (np.floor(xc) - N // 2).astype(np.int32)
    fx = (xc - np.floor(xc)).astype(np.float32)
    fy = (yc - np.floor(yc)).astype(np.float32)
    data = np.fft.ifftshift(np.asarray(dataset.diffraction, np.float32), axes=(-2, -1))
    unshifted_mask = np.fft.ifftshift(mask).astype(np.float32)

    solver = _Solver(N, side, config, scale, resolve_jit_compile(None))
    obj = tf.Variable(_initial_canvas(initial, x0, y0, side))
    probe_var = tf.Variable(probe)
    rng = np.random.default_rng(config.seed)
    fitted, held = _split_positions(x.size, config.holdout, config.seed)
    losses, held_losses = [], []
    progress = None
    if verbose:
        import keras

        progress = keras.utils.Progbar(config.iterations, unit_name="iteration")
    start = time.perf_counter()
    tensors = [tf.constant(a) for a in (rows0, cols0, fx, fy, data)]
    held_tensors = [tf.gather(t, tf.constant(held)) for t in tensors]
    mask_t = tf.constant(unshifted_mask)
    best = _Best()
    if held.size:
        held_losses.append(_mean_misfit(solver, obj, probe_var, held_tensors, mask_t, config.batch_size))
        best.offer(0, held_losses[-1], obj, probe_var)
    for iteration in range(config.iterations):
        order = fitted[rng.permutation(fitted.size)]
        update_probe = config.refine_probe and iteration >= config.probe_start
        total, count = 0.0, 0
        for lo in range(0, order.size, config.batch_size):
            batch = tf.constant(order[lo:lo + config.batch_size].astype(np.int32))
            loss = solver.step(obj, probe_var, *[tf.gather(t, batch) for t in tensors], mask_t,
                               tf.constant(update_probe))
            n = int(batch.shape[0])
            total, count = total + float(loss) * n, count + n
        losses.append(total / count)
        values = [("loss", losses[-1])]
        if held.size:
            held_losses.append(_mean_misfit(solver, obj, probe_var, held_tensors, mask_t, config.batch_size))
            values.append(("held_out", held_losses[-1]))
            counts = not (config.refine_probe and iteration < config.probe_start)
            if not best.offer(iteration + 1, held_losses[-1], obj, probe_var) and counts:
                best.stale += 1
        if progress is not None:
            progress.update(iteration + 1, values=values)
        if best.stale >= config.patience:
            break
    seconds = time.perf_counter() - start
    if held.size:
        obj.assign(best.obj)
        probe_var.assign(best.probe)
    best_iteration = best.iteration if held.size else len(losses)

    illumination = solver.illumination(probe_var, *tensors[:4]).numpy()
    coverage = illumination > 0.1 * illumination.max()
    rec = Reconstruction(obj=obj.numpy().astype(np.complex64), x0=float(x0), y0=float(y0), coverage=coverage,
                         centroids=np.stack([x, y], axis=1).astype(np.float64))
    return RefineResult(rec, probe_var.numpy().astype(np.complex64), losses, seconds, held_losses, best_iteration)


def refine_from_best_start(dataset: "PtychoDataset", config: RefineConfig, initial: "Reconstruction",
                           verbose: bool = False) -> tuple[RefineResult, str]:
    """Refine from ``initial`` (a network's stitch) and from ones; keep the result that fits the data better.

    "Better" is the lower held-out misfit at the kept iteration (``config.holdout`` > 0, REFINE-HOLDOUT-001),
    else the lower final misfit of the fitted positions: chosen from the data alone, never from a truth. A
    network's stitch can hold phase defects (vortices, wraps) that local refinement keeps, where the start
    from ones has none (ledger REFINE-BEST-START-001). Returns (the kept result, 'network' or 'ones').
    """
    results = {"network": refine(dataset, config, initial=initial, verbose=verbose),
               "ones": refine(dataset, config, verbose=verbose)}

    def misfit(result: RefineResult) -> float:
        if result.holdout_loss:
            return float(result.holdout_loss[result.best_iteration])
        return float(result.loss[-1]) if result.loss else float("inf")

    start = min(results, key=lambda name: misfit(results[name]))
    return results[start], start


def _split_positions(M: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fitted, held) int32 position indices: round(holdout·M) positions drawn with ``seed`` are held out."""
    n_held = int(round(holdout * M))
    held = np.zeros(M, bool)
    if n_held:
        held[np.random.default_rng([seed, 1]).choice(M, n_held, replace=False)] = True
    return np.flatnonzero(~held).astype(np.int32), np.flatnonzero(held).astype(np.int32)


def _mean_misfit(solver: "_Solver", obj, probe, tensors, mask, batch_size: int) -> float:
    """The mean misfit of the positions in ``tensors`` (rows0, cols0, fx, fy, data), nothing updated."""
    total, M = 0.0, int(tensors[0].shape[0])
    for lo in range(0, M, batch_size):
        part = [t[lo:lo + batch_size] for t in tensors]
        total += float(solver.misfit(obj, probe, *part, mask)) * int(part[0].shape[0])
    return total / M


class _Best:
    """The lowest held-out misfit seen, the iteration and the object and probe that gave it."""

    def __init__(self) -> None:
        self.loss, self.iteration, self.stale, self.obj, self.probe = math.inf, 0, 0, None, None

    def offer(self, iteration: int, loss: float, obj, probe) -> bool:
        if not loss < self.loss:
            return False
        self.loss, self.iteration, self.stale = loss, iteration, 0
        self.obj, self.probe = obj.numpy(), probe.numpy()
        return True


class _Solver:
    """The compiled update step and the illumination map of one canvas size and patch size."""

    def __init__(self, N: int, side: int, config: RefineConfig, scale: float, jit_compile: bool):
        import tensorflow as tf

        self.N, self.side, self.config, self.scale = N, side, config, float(scale)
        self.step = tf.function(self._step, jit_compile=jit_compile)
        self.misfit = tf.function(self._misfit, jit_compile=jit_compile, reduce_retracing=True)
        self.illumination = tf.function(self._illumination, jit_compile=jit_compile)

    def _window_index(self, rows0, cols0):
        import tensorflow as tf

        taps = tf.range(self.N + 1, dtype=tf.int32)
        rows = rows0[:, None] + taps[None, :]
        cols = cols0[:, None] + taps[None, :]
        return rows[:, :, None] * self.side + cols[:, None, :]  # (B, N+1, N+1) flat canvas index

    @staticmethod
    def _weights(fx, fy):
        fx, fy = fx[:, None, None], fy[:, None, None]
        return ((1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx)

    def _extract(self, obj, index, weights):
        """Bilinear patches (B, N, N) of the canvas (SPEC §3, as ``physics.object_patches``)."""
        import tensorflow as tf

        window = tf.gather(tf.reshape(obj, [-1]), index)
        w = [tf.cast(v, obj.dtype) for v in weights]
        return (w[0] * window[:, :-1, :-1] + w[1] * window[:, :-1, 1:]
                + w[2] * window[:, 1:, :-1] + w[3] * window[:, 1:, 1:])

    def _spread(self, values, index, weights):
        """Adjoint of ``_extract``: scatter-add (B, N, N) patch values onto the canvas (side, side)."""
        import tensorflow as tf

        w = [tf.cast(v, values.dtype) for v in weights]
        pads = ([[0, 0], [0, 1], [0, 1]], [[0, 0], [0, 1], [1, 0]], [[0, 0], [1, 0], [0, 1]], [[0, 0], [1, 0], [1, 0]])
        window = sum(tf.pad(wk * values, pad) for wk, pad in zip(w, pads))
        flat = tf.math.unsorted_segment_sum(tf.reshape(window, [-1]), tf.reshape(index, [-1]), self.side ** 2)
        return tf.reshape(flat, [self.side, self.side])

    def _illumination(self, probe, rows0, cols0, fx, fy):
        import tensorflow as tf

        index = self._window_index(rows0, cols0)
        power = tf.broadcast_to(tf.abs(probe) ** 2, [tf.shape(rows0)[0], self.N, self.N])
        return self._spread(power, index, self._weights(fx, fy))

    def _forward(self, obj, probe, rows0, cols0, fx, fy, data, mask):
        """Patches (B, N, N), far field Ψ (B, N, N), the corrected far field Ψ' and the mean misfit."""
        import tensorflow as tf

        n = tf.cast(self.N, tf.complex64)
        index = self._window_index(rows0, cols0)
        weights = self._weights(fx, fy)
        patches = self._extract(tf.convert_to_tensor(obj), index, weights)
        far = tf.signal.fft2d(tf.convert_to_tensor(probe)[None] * patches) / n
        amplitude = tf.abs(far)
        pixels = tf.reduce_sum(mask * tf.ones_like(data))
        if self.config.loss == "amplitude":
            target = tf.complex(data / (amplitude + 1e-12), tf.zeros_like(data)) * far
            return patches, far, target, tf.reduce_sum(mask * (amplitude - data) ** 2) / pixels
        s2 = self.scale ** 2
        counts, predicted = s2 * data ** 2, s2 * amplitude ** 2
        eps = 1e-8 * tf.maximum(1.0, tf.reduce_mean(counts))
        ratio = tf.minimum(counts / (predicted + eps), 9.0)
        target = far * tf.complex(1.0 + 0.5 * (ratio - 1.0), tf.zeros_like(ratio))
        deviance = predicted - counts - counts * (tf.math.log(predicted + eps) - tf.math.log(counts + eps))
        return patches, far, target, tf.reduce_sum(mask * deviance) / pixels

    def _misfit(self, obj, probe, rows0, cols0, fx, fy, data, mask):
        return self._forward(obj, probe, rows0, cols0, fx, fy, data, mask)[3]

    def _step(self, obj, probe, rows0, cols0, fx, fy, data, mask, update_probe):
        import tensorflow as tf

        cfg, n = self.config, tf.cast(self.N, tf.complex64)
        index = self._window_index(rows0, cols0)
        weights = self._weights(fx, fy)
        P = tf.convert_to_tensor(probe)
        patches, far, target, residual = self._forward(obj, probe, rows0, cols0, fx, fy, data, mask)
        amplitude = tf.abs(far)
        mask_c = tf.complex(mask, tf.zeros_like(mask))
        delta = tf.signal.ifft2d((target - far) * mask_c[None]) * n  # exit-wave correction (B, N, N)

        gradient = self._spread(tf.math.conj(P)[None] * delta, index, weights)
        lit = self._spread(tf.broadcast_to(tf.abs(P) ** 2, tf.shape(amplitude)), index, weights)
        denominator = lit + cfg.alpha * tf.reduce_max(lit)
        obj.assign_add(cfg.object_step * gradient / tf.complex(denominator, tf.zeros_like(denominator)))

        g = tf.reduce_sum(tf.math.conj(patches) * delta, axis=0)
        d = tf.reduce_sum(tf.abs(patches) ** 2, axis=0)
        d = d + cfg.alpha * tf.reduce_max(d)
        step = cfg.probe_step * tf.cast(update_probe, tf.float32)
        probe.assign_add(g * tf.complex(step / d, tf.zeros_like(d)))
        return residual
