"""Experiment behind ledger TEACHER-DISTILL-001: train the network against an iterative reconstruction of its own
training scan (the teacher: ``ptycho.refine`` from ones, no ground truth), with or without the Poisson NLL.

    python scripts/teacher_experiment.py CASE MODE EPOCHS TEACHER_WEIGHT
    python scripts/teacher_experiment.py focused-lines-g2-N64-1e9 teacher 8 1     # MODE: teacher | both | nll

CASE is a case of scripts/generality.py. Prints the test-scan amplitude (and phase) SSIM after every epoch and
one JSON line at the end. Not part of the package: the teacher did not speed learning and was not adopted.
"""
import json, sys, time
from dataclasses import replace
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import generality as G
import keras, tensorflow as tf
from ptycho.model import create_model_with_gridsize, adapt_input_normalization, get_intensity_scale
from ptycho.refine import RefineConfig, refine
from ptycho.physics import object_patches
from ptycho.inference import reconstruct
from ptycho.losses import poisson_nll
from ptycho.tf_helper import taper_window
from ptycho.simulate import simulate_dataset

case_name, mode, epochs, tw = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
case = [c for c in G.CASES if c.name == case_name][0]
probe = G.star_probe(case.N) if case.probe == "star" else None
config = G.simulation(case, 0)
train = simulate_dataset(config, probe=probe)
test = simulate_dataset(replace(config, seed=1000), obj=train.obj, probe=train.probe)
new = simulate_dataset(replace(config, seed=2000), probe=train.probe)
N, C = case.N, case.gridsize ** 2
t0 = time.perf_counter()
teacher = refine(train, RefineConfig(iterations=100)).reconstruction
t_teacher = time.perf_counter() - t0
cent = np.asarray(train.coords_offsets).reshape(-1, 2).astype(np.float64)
tpatch = object_patches(teacher.obj, cent[:, 0] - teacher.x0, cent[:, 1] - teacher.y0, N)
print("teacher", G.scores(teacher, train.obj), round(t_teacher, 1), flush=True)
w = np.zeros((N, N), np.float32)
M = N // 2
w[N // 2 - M // 2: N // 2 - M // 2 + M, N // 2 - M // 2: N // 2 - M // 2 + M] = np.asarray(taper_window(M)).reshape(M, M)
w /= w.mean()
target = np.stack([tpatch.real, tpatch.imag], -1).astype(np.float32)  # (B,N,N,2)

auto, d2o = create_model_with_gridsize(case.gridsize, N, probe=train.probe, intensity_scale=train.intensity_scale, seed=0)
adapt_input_normalization(auto, train.X, positions=train.coords_relative)

class ToChannels(keras.layers.Layer):
    def call(self, z):
        return tf.concat([tf.math.real(z), tf.math.imag(z)], -1)
    def compute_output_spec(self, z):
        return keras.KerasTensor(z.shape[:-1] + (2,), dtype="float32")

obj, amp, inten = auto.outputs
wrapper = keras.Model(auto.inputs, [ToChannels()(obj), inten])
wt = tf.constant(w[None, :, :, None])
def teacher_loss(y_true, y_pred):
    return tf.reduce_mean(wt * tf.square(y_pred - y_true)) 
s = get_intensity_scale(auto)
X = np.asarray(train.X, np.float32) * np.float32(s)
P = np.asarray(train.coords_relative, np.float32)
nll_w = 1.0 if mode in ("both", "nll") else 0.0
t_w = tw if mode in ("both", "teacher") else 0.0
wrapper.compile(optimizer=keras.optimizers.Adam(1e-3), loss=[teacher_loss, poisson_nll], loss_weights=[t_w, nll_w], jit_compile=False)
ds = tf.data.Dataset.from_tensor_slices(({"diffraction": X, "positions": P}, (target, np.square(X)))).shuffle(len(X), seed=0).batch(16, drop_remainder=True).prefetch(2)
out = {"case": case_name, "mode": mode, "tw": tw, "teacher": G.scores(teacher, train.obj), "teacher_s": round(t_teacher, 1)}
t0 = time.perf_counter()
for e in range(epochs):
    h = wrapper.fit(ds, epochs=1, verbose=0)
    rec = reconstruct(d2o, test, M="auto")
    print(e + 1, {k: round(v[-1], 5) for k, v in h.history.items()}, G.scores(rec, train.obj), round(time.perf_counter() - t0), flush=True)
out["train_s"] = round(time.perf_counter() - t0, 1)
out["test"] = G.scores(reconstruct(d2o, test, M="auto"), train.obj)
out["new"] = G.scores(reconstruct(d2o, new, M="auto", intensity_scale=new.intensity_scale), new.obj)
print(json.dumps(out), flush=True)
