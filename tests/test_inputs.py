"""Model inputs (ptycho.inputs): the one builder and shape check that training and inference share."""
import numpy as np
import pytest

from ptycho.data import PtychoDataset
from ptycho.inputs import check_dataset, model_geometry, model_inputs


class _Model:
    """Duck-typed network: only ``inputs[0].shape`` (B, N, N, C) is read."""

    def __init__(self, *shape):
        self.inputs = [type("T", (), {"shape": (None, *shape)})()]


def _dataset(N=8, groups=((0, 1, 2, 3), (1, 2, 3, 4))):
    M = 5
    return PtychoDataset(diffraction=np.ones((M, N, N), np.float32), xcoords=np.arange(M, dtype=float),
                         ycoords=np.arange(M, dtype=float) * 2, probe=np.ones((N, N), np.complex64),
                         group_indices=np.array(groups))


def test_model_geometry_is_n_and_the_square_root_of_c():
    assert model_geometry(_Model(32, 32, 4)) == (32, 2)
    assert model_geometry(_Model(64, 64, 1)) == (64, 1)
    with pytest.raises(ValueError, match=r"^C = 3 is not a perfect square \(gridsize\*\*2\)$"):
        model_geometry(_Model(8, 8, 3))


def test_check_dataset_refuses_what_the_model_cannot_take():
    data = _dataset()
    check_dataset(_Model(8, 8, 4), data)
    with pytest.raises(ValueError) as caught:
        check_dataset(_Model(8, 8, 1), data)
    assert str(caught.value) == "dataset: grouped diffraction has shape (8, 8, 4), the model expects (8, 8, 1)"
    with pytest.raises(TypeError, match="^dataset: expected PtychoDataset, got dict$"):
        check_dataset(_Model(8, 8, 4), {})


def test_model_inputs_are_scaled_amplitudes_and_relative_positions():
    data = _dataset()
    inputs = model_inputs(data, 2.5)
    assert inputs["diffraction"].dtype == np.float32 and inputs["diffraction"].shape == (2, 8, 8, 4)
    np.testing.assert_array_equal(inputs["diffraction"], data.X * np.float32(2.5))
    assert inputs["positions"].dtype == np.float32 and inputs["positions"].shape == (2, 1, 2, 4)
    np.testing.assert_array_equal(inputs["positions"], data.coords_relative)
