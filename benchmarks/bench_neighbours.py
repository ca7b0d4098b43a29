"""Cost of the scan neighbours in a gridsize-1 model's retrieval (RETRIEVAL-NEIGHBOURS-001). One JSON line.

``python benchmarks/bench_neighbours.py``: N=64, gridsize 1, 512 patterns at 1e9 photons; the default model
(3 neighbours, retrieval canvas 96 px) against ``retrieval_neighbours=0`` (own pattern, canvas 74 px), built
and timed in the same run: the retrieval estimates alone (``model_state.retrieval_estimates``, what training
computes once) and the whole inference (``inference.reconstruct``: predict + stitch), each the median of 3
after a warm-up call.
"""
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ptycho.config import ModelConfig, SimulationConfig  # noqa: E402
from ptycho.inference import reconstruct  # noqa: E402
from ptycho.inputs import model_inputs, neighbour_count  # noqa: E402
from ptycho.model import build_models  # noqa: E402
from ptycho.model_state import retrieval_estimates  # noqa: E402
from ptycho.simulate import simulate_dataset  # noqa: E402


def _median_seconds(call, repeats: int = 3) -> float:
    call()  # warm-up: compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    data = simulate_dataset(SimulationConfig(N=64, gridsize=1, n_positions=512, nphotons=1e9, seed=0))
    result = {"benchmark": "neighbours", "N": 64, "gridsize": 1, "patterns": data.n_groups}
    for K in (0, ModelConfig().neighbours):
        ae, d2o = build_models(ModelConfig(N=64, gridsize=1, retrieval_neighbours=K), data.probe,
                               data.intensity_scale)
        inputs = model_inputs(data, data.intensity_scale, neighbour_count(ae))
        result[f"estimates_s_K{K}"] = round(_median_seconds(lambda: retrieval_estimates(ae, inputs)), 2)
        result[f"reconstruct_s_K{K}"] = round(_median_seconds(lambda: reconstruct(d2o, data, M="auto")), 2)
    K = ModelConfig().neighbours
    result["estimates_ratio"] = round(result[f"estimates_s_K{K}"] / result["estimates_s_K0"], 2)
    result["reconstruct_ratio"] = round(result[f"reconstruct_s_K{K}"] / result["reconstruct_s_K0"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
