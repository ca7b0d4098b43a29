"""Training history (ptycho.history): summary, and history.json + training.png written together."""
import json
import os

import numpy as np

from ptycho import history


def test_summarise_history():
    assert history.summarise({"loss": [2.0, 1.0, 0.5], "val_loss": [3.0, 1.5, 1.7]}) == {
        "final_loss": 0.5, "final_val_loss": 1.7, "best_val_loss": 1.5, "epochs_run": 3}
    assert history.summarise({}) == {
        "final_loss": None, "final_val_loss": None, "best_val_loss": None, "epochs_run": 0}


def test_write_history_writes_strict_json_and_a_png(tmp_path):
    import matplotlib.image

    record = {"loss": [np.float32(3.0), 2.0], "val_loss": [3.5, float("nan")], "test_ssim": (0.1, 0.2),
              "epochs_run": 2}
    history.write_history(record, tmp_path / "history.json", tmp_path / "training.png")
    assert json.loads((tmp_path / "history.json").read_text()) == {
        "loss": [3.0, 2.0], "val_loss": [3.5, None], "test_ssim": [0.1, 0.2], "epochs_run": 2}
    png = matplotlib.image.imread(tmp_path / "training.png")
    assert png.shape[:2] == (450, 700) and png[..., :3].std() > 0.05  # 7 x 4.5 in at 100 dpi, not blank
    assert sorted(os.listdir(tmp_path)) == ["history.json", "training.png"]
