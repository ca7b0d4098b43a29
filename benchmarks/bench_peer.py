"""Training and inference speed of ours against the reference implementation, side by side. One JSON line.

    PTYCHO_PEER_SRC=/path/to/PtychoPINN [PTYCHO_PEER_PYTHON=/path/to/python] python benchmarks/bench_peer.py

Each implementation runs in its own worker process (the reference's package is also called ``ptycho``),
both on the same grouped batch: N=64, gridsize 2, batch 15 groups (see BATCH), n_filters_scale 2,
Poisson NLL, each at its own defaults otherwise (ours: the default 'unet' architecture, XLA where
``default_jit_compile`` says, i.e. off on a CPU-only machine, and the convolution precision
``default_conv_dtype`` gives, reported as ``ours_conv_dtype``; the reference: its
``create_compiled_model``, no XLA). The workers take turns, a few steps at a time, so load drift on a
shared machine hits both alike, with ``SETTLE_S`` of idle time before each turn: TF's worker threads keep
spinning for a while after their work, and without the pause the worker that just finished slowed the other
one's next steps (ours: 51 vs 58 groups/s in training, most of it on the many small ops of the physics,
ledger PEER-BENCH-001); medians of ``STEPS`` timed steps each. Timed per step (result
materialised):

- train: one ``train_on_batch`` of the full model;
- infer: one ``predict_on_batch`` of ``diffraction_to_obj``;
- conv: one ``train_on_batch`` of the trainable convolution stack alone (the same layers, MAE on its
  outputs; no probe, merge, translation or FFT), so ``physics_overhead`` = train ÷ conv shows what the
  physics costs.

Without ``PTYCHO_PEER_SRC`` only ours is timed and the peer keys are null. The reference runs with
``TF_USE_LEGACY_KERAS=1`` (it needs tf-keras and tensorflow-probability); ``PTYCHO_PEER_PYTHON`` picks the
interpreter that has them (default: this one).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# Batch 15, not 16: at B·C >= 64 patches the reference merges the whole batch onto one canvas and its
# training step fails (the bug of ledger MERGE-BATCH-COLLAPSE-001); both sides run the same 15-group batch.
N, GRIDSIZE, BATCH = 64, 2, 15
C = GRIDSIZE ** 2
STEPS = 15          # timed steps per measurement and implementation
ROUND = 5           # steps per turn
WARMUP = 3
SETTLE_S = 0.5     # idle time before each turn, so the other worker's spinning threads have gone to sleep
PHOTONS = 1e9
OPS = ("train", "infer", "conv")


# --------------------------------------------------------------------------------------------------
# Shared batch (numpy only, so the orchestrator never imports TensorFlow)
# --------------------------------------------------------------------------------------------------
def make_batch(path: str, seed: int = 0) -> None:
    """A grouped batch: diffraction amplitudes X (B, N, N, C) of a disk probe times a random complex object,
    scaled so a pattern holds ``PHOTONS`` counts; positions (B, 1, 2, C) within ±4 px; the scale s."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:N, :N] - N / 2
    probe = (np.hypot(yy, xx) < N / 4).astype(np.complex64)
    obj = rng.uniform(0.5, 1.5, (BATCH, C, N, N)) * np.exp(0.5j * rng.standard_normal((BATCH, C, N, N)))
    far = np.abs(np.fft.fftshift(np.fft.fft2(probe * obj, norm="ortho"), axes=(-2, -1)))
    X = np.transpose(far, (0, 2, 3, 1)).astype(np.float32)
    scale = float(np.sqrt(PHOTONS / np.mean(np.sum(X ** 2, axis=(1, 2)))))
    positions = rng.uniform(-4, 4, (BATCH, 1, 2, C)).astype(np.float32)
    np.savez(path, X=X, positions=positions, probe=probe, scale=np.float64(scale))


# --------------------------------------------------------------------------------------------------
# Workers: build, warm up, then answer "<op> <steps>" lines with a JSON list of seconds per step
# --------------------------------------------------------------------------------------------------
def _timed(fn, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _ours(batch):
    import numpy as np

    from ptycho.config import ModelConfig
    from ptycho.model import (adapt_input_normalization, build_conv_stack, create_model_with_gridsize,
                              default_jit_compile, get_conv_dtype)

    X, pos, s = batch["X"], batch["positions"], float(batch["scale"])
    ae, d2o = create_model_with_gridsize(GRIDSIZE, N, probe=batch["probe"], intensity_scale=s, seed=0)
    adapt_input_normalization(ae, X, positions=pos)
    d = X * np.float32(s)
    inputs = {"diffraction": d, "positions": pos}
    targets = (d, d, d ** 2)
    stack = build_conv_stack(ModelConfig(N=N, gridsize=GRIDSIZE), seed=0)
    stack.compile(optimizer="adam", loss=["mae", "mae"], jit_compile=default_jit_compile())  # as the model
    features = np.random.default_rng(1).standard_normal((BATCH,) + tuple(stack.inputs[0].shape[1:])).astype(np.float32)
    logits = [np.zeros((BATCH,) + tuple(o.shape[1:]), np.float32) for o in stack.outputs]
    return {
        "train": lambda: ae.train_on_batch(inputs, targets),
        "infer": lambda: d2o.predict_on_batch(inputs),
        "conv": lambda: stack.train_on_batch(features, logits),
    }, {"conv_dtype": get_conv_dtype(ae)}


def _peer(batch):
    import numpy as np
    import tensorflow as tf
    from ptycho import params as p

    X, pos, s = batch["X"], batch["positions"], float(batch["scale"])
    p.cfg.update({"N": N, "gridsize": GRIDSIZE, "batch_size": BATCH, "intensity_scale": s,
                  "probe": batch["probe"].reshape(N, N, 1), "nphotons": PHOTONS})
    from ptycho import model as peer_model

    ae, d2o = peer_model.create_compiled_model(gridsize=GRIDSIZE, N=N)
    d = X * np.float32(s)
    obj = np.ones((BATCH, N, N, 1), np.complex64)
    inputs, targets = [d, pos], [obj, d, d ** 2]
    features = tf.keras.Input((N, N, C))
    amp, phase = peer_model.create_autoencoder(features, p.get("n_filters_scale"), GRIDSIZE, p.get("object.big"))
    stack = tf.keras.Model(features, [amp, phase])
    stack.compile(optimizer="adam", loss=["mae", "mae"])
    noise = np.random.default_rng(1).standard_normal((BATCH, N, N, C)).astype(np.float32)
    zeros = [np.zeros((BATCH,) + tuple(o.shape[1:]), np.float32) for o in stack.outputs]
    return {
        "train": lambda: ae.train_on_batch(inputs, targets),
        "infer": lambda: d2o.predict_on_batch(inputs),
        "conv": lambda: stack.train_on_batch(noise, zeros),
    }, {}


def worker(kind: str, batch_path: str) -> None:
    import numpy as np

    # The protocol gets its own copy of stdout; anything the implementations print goes to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    batch = dict(np.load(batch_path))
    ops, info = _ours(batch) if kind == "ours" else _peer(batch)
    for fn in ops.values():
        _timed(fn, WARMUP)
    print("ready", json.dumps(info), file=protocol, flush=True)
    for line in sys.stdin:
        op, steps = line.split()
        print(json.dumps(_timed(ops[op], int(steps))), file=protocol, flush=True)


# --------------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, kind: str, batch_path: str, python: str, env: dict):
        self.kind = kind
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--worker", kind, batch_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        word, _, info = self.proc.stdout.readline().strip().partition(" ")
        if word != "ready":
            self.proc.kill()
            raise RuntimeError(f"{kind} worker failed to start (exit {self.proc.wait()}); see its stderr above")
        self.info = json.loads(info)

    def time(self, op: str, steps: int) -> list[float]:
        self.proc.stdin.write(f"{op} {steps}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _env(extra: dict) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    return env


def main() -> dict:
    peer_src = os.environ.get("PTYCHO_PEER_SRC")
    if peer_src and not os.path.isdir(os.path.join(peer_src, "ptycho")):
        sys.exit(f"PTYCHO_PEER_SRC: {peer_src!r} has no ptycho/ package (give the root of a PtychoPINN checkout)")
    if not peer_src:
        print("bench_peer: PTYCHO_PEER_SRC is not set; timing ours alone", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        batch_path = os.path.join(tmp, "batch.npz")
        make_batch(batch_path)
        workers = [Worker("ours", batch_path, sys.executable, _env({}))]
        if peer_src:
            peer_env = _env({"PYTHONPATH": peer_src, "TF_USE_LEGACY_KERAS": "1"})
            workers.append(Worker("peer", batch_path, os.environ.get("PTYCHO_PEER_PYTHON", sys.executable), peer_env))
        times = {(w.kind, op): [] for w in workers for op in OPS}
        for _ in range(STEPS // ROUND):
            for op in OPS:
                for w in workers:
                    time.sleep(SETTLE_S)
                    times[(w.kind, op)] += w.time(op, ROUND)
        for w in workers:
            w.close()
    rate = {key: BATCH / statistics.median(values) for key, values in times.items()}

    def get(kind, op):
        return round(rate[(kind, op)], 1) if (kind, op) in rate else None

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    result = {
        "benchmark": "peer", "N": N, "gridsize": GRIDSIZE, "batch_size": BATCH, "steps": STEPS,
        "ours_train_groups_per_s": get("ours", "train"), "peer_train_groups_per_s": get("peer", "train"),
        "ours_infer_groups_per_s": get("ours", "infer"), "peer_infer_groups_per_s": get("peer", "infer"),
        "ours_conv_groups_per_s": get("ours", "conv"), "peer_conv_groups_per_s": get("peer", "conv"),
    }
    result["train_ratio"] = ratio(result["ours_train_groups_per_s"], result["peer_train_groups_per_s"])
    result["infer_ratio"] = ratio(result["ours_infer_groups_per_s"], result["peer_infer_groups_per_s"])
    result["physics_overhead"] = ratio(result["ours_conv_groups_per_s"], result["ours_train_groups_per_s"])
    result["peer_physics_overhead"] = ratio(result["peer_conv_groups_per_s"], result["peer_train_groups_per_s"])
    result["ours_conv_dtype"] = workers[0].info["conv_dtype"]
    result["cpus"] = os.cpu_count()
    return result


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(main()), flush=True)
