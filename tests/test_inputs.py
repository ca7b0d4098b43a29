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


def test_model_inputs_carry_each_patterns_scan_neighbours_at_gridsize_1():
    """RETRIEVAL-NEIGHBOURS-001: positions (m, 2m), pattern m holds m + 1; at N = 16 the radius is 4 px, so
    consecutive positions (2.24 px apart) are neighbours and the next but one (4.47 px) are not."""
    M, N, scale = 5, 16, 3.0
    data = PtychoDataset(diffraction=np.arange(1, M + 1, dtype=np.float32)[:, None, None] * np.ones((M, N, N)),
                         xcoords=np.arange(M, dtype=float), ycoords=np.arange(M, dtype=float) * 2,
                         probe=np.ones((N, N), np.complex64), group_indices=np.array([[0], [2], [4]]))
    inputs = model_inputs(data, scale, neighbours=2)
    near = np.array([[1, 0], [1, 3], [3, 4]])  # the centre fills a missing neighbour; ties: lower index first
    assert inputs["neighbour_diffraction"].shape == (3, N, N, 2)
    np.testing.assert_allclose(inputs["neighbour_diffraction"],
                               np.broadcast_to(scale * (near + 1.0)[:, None, None, :], (3, N, N, 2)))
    own = np.array([0, 2, 4])
    expected = -np.stack([near - own[:, None], 2.0 * (near - own[:, None])], axis=1)[:, None]  # (B, 1, 2, K)
    np.testing.assert_allclose(inputs["neighbour_positions"], expected)
    assert "neighbour_diffraction" not in model_inputs(data, scale)
    with pytest.raises(ValueError, match=r"^dataset: scan neighbours join gridsize-1 groups only, got C = 4$"):
        model_inputs(_dataset(N=16), scale, neighbours=2)
