"""RETRIEVAL-NEIGHBOURS-001: at gridsize 1 a single pattern leaves the twin image undetermined; the pattern's
scan neighbours, joining its retrieval, remove it (the gridsize-1 network alone: amplitude SSIM 0.78 -> 0.99)."""
import numpy as np
import pytest


def _estimate_error(data, neighbours: int) -> float:
    """Relative error of the gridsize-1 retrieval estimate over the central N/2 window of each pattern, up to each
    pattern's constant phase (not measurable)."""
    from ptycho.config import ModelConfig
    from ptycho.inputs import model_inputs, neighbour_count
    from ptycho.model import build_models
    from ptycho.model_state import retrieval_estimates

    N = data.N
    config = ModelConfig(N=N, gridsize=1, retrieval_neighbours=neighbours)
    autoencoder, _ = build_models(config, data.probe, data.intensity_scale)
    assert neighbour_count(autoencoder) == neighbours
    inputs = model_inputs(data, data.intensity_scale, neighbour_count(autoencoder))
    q = N // 4
    estimate = retrieval_estimates(autoencoder, inputs)[:, q:N - q, q:N - q, :]
    truth = data.Y[:, q:N - q, q:N - q, :]
    phase = np.angle(np.sum(np.conj(estimate) * truth, axis=(1, 2, 3)))
    return float(np.linalg.norm(estimate * np.exp(1j * phase)[:, None, None, None] - truth) / np.linalg.norm(truth))


@pytest.mark.parametrize("object_kind", ["lines", "grf_complex"])
def test_scan_neighbours_bring_the_gridsize_1_estimate_to_the_truth(object_kind):
    """Oracle: a gridsize-1 scan (focused probe, 1e9 photons) of a known object. With its own pattern only, the
    retrieval stalls between the object and its twin; with the default 3 scan neighbours it comes close to the
    true patches (measured here: relative error 0.129 -> 0.081 for lines, 0.331 -> 0.175 for the complex GRF)."""
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.simulate import simulate_dataset

    data = simulate_dataset(SimulationConfig(N=32, gridsize=1, object_size=96, buffer=12.0, n_positions=128,
                                             object_kind=object_kind, nphotons=1e9, seed=0))
    alone, with_neighbours = _estimate_error(data, 0), _estimate_error(data, ModelConfig().neighbours)
    assert with_neighbours < 0.7 * alone, (alone, with_neighbours)


def test_adapting_a_gridsize_1_model_asks_for_its_scan_neighbours():
    """The standardiser's statistics come from the retrieval estimates, which need the neighbours: without them a
    one-line error names the argument; with them (or the estimates) the statistics are set."""
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.inputs import NEIGHBOUR_INPUTS, model_inputs
    from ptycho.model import build_models
    from ptycho.model_state import adapt_input_normalization
    from ptycho.simulate import simulate_dataset

    data = simulate_dataset(SimulationConfig(N=32, gridsize=1, object_size=96, buffer=12.0, n_positions=16,
                                             nphotons=1e9, seed=0))
    autoencoder, _ = build_models(ModelConfig(N=32, gridsize=1), data.probe, data.intensity_scale)
    with pytest.raises(ValueError, match=r"^neighbours: this model's retrieval also takes each pattern's scan "
                                         r"neighbours; give \['neighbour_diffraction', 'neighbour_positions'\]"):
        adapt_input_normalization(autoencoder, data.X, positions=data.coords_relative)
    inputs = model_inputs(data, data.intensity_scale, neighbours=3)
    assert adapt_input_normalization(autoencoder, data.X, positions=data.coords_relative,
                                     neighbours={k: inputs[k] for k in NEIGHBOUR_INPUTS})
