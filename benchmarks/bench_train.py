"""Training and inference throughput, N=64, gridsize 2, batch 16, default XLA setting. Prints one JSON line.

``python benchmarks/bench_train.py [ARCHITECTURE ...]`` (default: the package default, 'retrieval'; e.g.
``retrieval unet`` times both in one run, one line each, for a same-run ratio). For 'retrieval' the training
epochs are timed as ``ptycho.train`` runs them, on the groups' estimates computed once
(``train_cached_samples_per_s``; the one-off estimate pass is ``estimate_seconds``), and recomputing them per
batch (``train_samples_per_s``); RETRIEVAL-CACHE-001.

A "sample" is one group of gridsize² = 4 diffraction patterns (one row of the model's batch); patterns/s
are reported too. Timings exclude compilation (a warm-up epoch / predict call first) and report the median
over repeats.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho.config import SimulationConfig, TrainingConfig  # noqa: E402
from ptycho.model import compile_autoencoder, create_model_with_gridsize, default_jit_compile, get_intensity_scale  # noqa: E402
from ptycho.model_state import model_on_cached_estimates, retrieval_estimates  # noqa: E402
from ptycho.simulate import simulate_dataset  # noqa: E402
from ptycho.train import make_pipeline, model_inputs  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def main(n_groups: int = 256, batch: int = 16, epochs: int = 3, predict_repeats: int = 5,
         architecture: str = "retrieval") -> dict:
    data = simulate_dataset(SimulationConfig(N=64, gridsize=2, n_positions=n_groups, nphotons=1e9, seed=0))
    ae, d2o = create_model_with_gridsize(2, 64, probe=data.probe, intensity_scale=data.intensity_scale, seed=0,
                                         architecture=architecture)
    compile_autoencoder(ae, nll_weight=1.0, mae_weight=0.0)  # XLA as default_jit_compile() says
    inputs = model_inputs(data, get_intensity_scale(ae))
    pipeline = make_pipeline(inputs, np.arange(data.n_groups), batch, shuffle=True, seed=0)
    timer = EpochTimer()
    ae.fit(pipeline, epochs=epochs + 1, verbose=0, callbacks=[timer])  # epoch 1 compiles: dropped
    steps = data.n_groups // batch
    train_rate = steps * batch / statistics.median(timer.seconds[1:])
    cached = {}
    if architecture == "retrieval":
        start = time.perf_counter()
        estimates = retrieval_estimates(ae, inputs)
        cached["estimate_seconds"] = round(time.perf_counter() - start, 2)
        twin = model_on_cached_estimates(ae)
        compile_autoencoder(twin, nll_weight=1.0, mae_weight=0.0)
        timer = EpochTimer()
        twin.fit(make_pipeline(inputs, np.arange(data.n_groups), batch, shuffle=True, seed=0, estimates=estimates),
                 epochs=epochs + 1, verbose=0, callbacks=[timer])
        cached["train_cached_samples_per_s"] = round(steps * batch / statistics.median(timer.seconds[1:]), 1)

    rates = {}
    for predict_batch in (16, 64):
        d2o.predict(inputs, batch_size=predict_batch, verbose=0)  # compile
        times = []
        for _ in range(predict_repeats):
            start = time.perf_counter()
            d2o.predict(inputs, batch_size=predict_batch, verbose=0)
            times.append(time.perf_counter() - start)
        rates[predict_batch] = data.n_groups / statistics.median(times)
    return {
        "benchmark": "train", "architecture": architecture, "N": 64, "gridsize": 2, "batch_size": batch, "n_groups": data.n_groups,
        "train_samples_per_s": round(train_rate, 1), "train_patterns_per_s": round(4 * train_rate, 1), **cached,
        "infer_samples_per_s_batch16": round(rates[16], 1), "infer_samples_per_s_batch64": round(rates[64], 1),
        "infer_patterns_per_s_batch64": round(4 * rates[64], 1),
        "jit_compile": default_jit_compile(), "tf": tf.__version__, "keras": keras.__version__, "cpus": os.cpu_count(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


if __name__ == "__main__":
    for name in sys.argv[1:] or ["retrieval"]:
        print(json.dumps(main(architecture=name)))
        sys.stdout.flush()
