"""Real experimental data end to end (slow): part of tike's Siemens star, imported, trained on, refined.

Before issue 20 a hand-converted star trained to a constant object at the amplitude ceiling with a flat loss
and no message. Here the fixture subset (80 positions, N = 128, tests/fixtures) goes through the package's
own path: the reader, training, the tapered stitch, and refinement of object and probe.
"""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

STAR = Path(__file__).resolve().parent / "fixtures" / "siemens_star_subset.npz.bz2"


@pytest.mark.slow
def test_star_subset_trains_off_its_plateau_and_reconstructs_a_non_constant_object():
    from ptycho import diagnostics, workflow
    from ptycho.config import TrainingConfig
    from ptycho.formats import read
    from ptycho.inference import reconstruct
    from ptycho.refine import RefineConfig, refine

    data = read(STAR, "tike")
    assert diagnostics.check_forward_model(data, source=str(STAR)) == []  # the reader's units pass the check
    grouped = replace(data, group_indices=np.arange(data.n_positions)[:, None])
    trained = workflow.train_model(grouped, TrainingConfig(nepochs=3, batch_size=8, verbose=0), source=str(STAR))
    loss = trained.history["loss"]
    assert not trained.history["warnings"], trained.history["warnings"]
    # Off the plateau: no flat-loss warning above, and training lowers the loss. The default network starts from its
    # group retrieval (GROUP-RETRIEVAL-001), not from a constant object, so its first epoch is already low
    # (measured 1.529, 1.535, 1.469 here; the old network fell > 10 % from a higher start).
    assert loss[-1] < loss[0], loss
    rec = reconstruct(trained.diffraction_to_obj, grouped, M="auto", intensity_scale=data.intensity_scale)
    amplitude = np.abs(rec.obj[rec.coverage])
    assert amplitude.std() / amplitude.mean() > 0.02  # not a constant
    assert np.mean(amplitude >= 0.98 * 2.0) < 0.5  # not stuck at the ceiling
    refined = refine(data, RefineConfig(iterations=15, refine_probe=True, probe_start=3), initial=rec)
    assert refined.loss[-1] < 0.5 * refined.loss[0]
    phase = np.angle(refined.reconstruction.obj[refined.reconstruction.coverage])
    assert np.std(phase) > 0.1  # the star is a phase object: its spokes carry the contrast
