"""Inference: per-group prediction stitched at the group centroids (SPEC §5)."""
import numpy as np
import pytest

from ptycho.data import PtychoDataset
from ptycho.inference import Reconstruction, reconstruct
from ptycho.objects import lines_object
from ptycho.physics import object_patches


class _TruthModel:
    """Duck-typed diffraction_to_obj that returns each group's true object (B, N, N, 1)."""

    def __init__(self, dataset, scale=2.0):
        self._dataset, self._scale = dataset, scale
        self.inputs = [np.zeros((1, *dataset.X.shape[1:]))]

    def get_layer(self, name):
        assert name == "intensity_scale"
        return type("L", (), {"log_scale": type("W", (), {"numpy": lambda s: np.log(self._scale)})()})()

    def predict(self, inputs, batch_size, verbose):
        np.testing.assert_allclose(inputs["diffraction"], self._dataset.X * self._scale, rtol=1e-6)
        centres = self._dataset.coords_offsets[:, 0, :, 0]
        N = self._dataset.N
        return object_patches(self._dataset.obj, centres[:, 0], centres[:, 1], N)[..., None]


def _grid_dataset(step=4, N=32):
    """gridsize-1 dataset on an integer grid whose mean is an integer: every stitch shift is exact."""
    obj = lines_object(96, 40, np.random.default_rng(0))
    coords = np.arange(32, 65, step, dtype=np.float64)  # mean 48
    xs, ys = np.meshgrid(coords, coords)
    M = xs.size
    return PtychoDataset(diffraction=np.ones((M, N, N), np.float32), xcoords=xs.ravel(), ycoords=ys.ravel(),
                         probe=np.ones((N, N), np.complex64), obj=obj, nphotons=1e6)


def test_stitching_true_group_objects_reproduces_the_object():
    data = _grid_dataset()
    rec = reconstruct(_TruthModel(data), data, M=8)
    assert isinstance(rec, Reconstruction)
    side = rec.obj.shape[0]
    assert (rec.x0 + side // 2, rec.y0 + side // 2) == (48.0, 48.0)
    truth = rec.truth(data.obj)
    rows, cols = rec.scanned_box()
    np.testing.assert_allclose(rec.obj[rows, cols], truth[rows, cols], atol=1e-5)
    # The covered box is the scanned range plus half a window on each side.
    assert (rows.stop - rows.start, cols.stop - cols.start) == (32 + 8, 32 + 8)
    assert np.all(rec.obj[~rec.coverage] == 0)


def test_reconstruct_rejects_mismatched_dataset():
    data = _grid_dataset(N=32)
    model = _TruthModel(_grid_dataset(N=16))
    with pytest.raises(ValueError, match=r"^dataset: grouped diffraction has shape \(32, 32, 1\), the model "
                                         r"expects \(16, 16, 1\)$"):
        reconstruct(model, data)
    with pytest.raises(ValueError, match="M"):
        reconstruct(_TruthModel(data), data, M=0)



class _OtherScaleModel(_TruthModel):
    """A model whose own s is ``model_scale`` that checks it is fed ``data_scale``·X."""

    def __init__(self, dataset, model_scale, data_scale):
        super().__init__(dataset, model_scale)
        self._data_scale = data_scale

    def predict(self, inputs, batch_size, verbose):
        np.testing.assert_allclose(inputs["diffraction"], self._dataset.X * self._data_scale, rtol=1e-6)
        return super().predict({"diffraction": inputs["diffraction"] / self._data_scale * self._scale},
                               batch_size, verbose)


def test_reconstruct_feeds_sqrt_counts_at_the_given_scale_and_records_centroids():
    """Data on another scale than the model's: ``intensity_scale`` (the data's own) sets s in s·X."""
    data = _grid_dataset()
    default = reconstruct(_TruthModel(data, scale=2.0), data, M=8)  # the model's own s: inputs 2·X
    np.testing.assert_allclose(default.centroids, data.coords_offsets[:, 0, :, 0], rtol=1e-6)
    given = reconstruct(_OtherScaleModel(data, model_scale=2.0, data_scale=3.0), data, M=8, intensity_scale=3.0)
    np.testing.assert_allclose(given.obj, default.obj)
    with pytest.raises(AssertionError):  # without it, the model's own s (2) is used: inputs 2·X, not 3·X
        reconstruct(_OtherScaleModel(data, model_scale=2.0, data_scale=3.0), data, M=8)
    with pytest.raises(ValueError, match="intensity_scale"):
        reconstruct(_TruthModel(data), data, M=8, intensity_scale=-1.0)
