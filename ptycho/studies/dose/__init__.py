"""The dose-response study (SPEC §6): does a Poisson-NLL-trained PINN beat an MAE-trained one at low dose?

Four network arms (the default ``--arms``), each a fresh model trained on its own simulated data set::

    arm        photons per pattern   loss
    high_nll   1e9                   Poisson NLL
    high_mae   1e9                   MAE
    low_nll    1e4                   Poisson NLL
    low_mae    1e4                   MAE

and four opt-in arms without training of their own (issue 21; ``--arms all`` or by name), which reconstruct
the arm's test scan with the iterative solver ``ptycho.refine`` (Poisson misfit, ``refine_iterations``
passes, the truth withheld)::

    high_iterative, low_iterative       from ones: the iterative baseline, no network
    high_nll_refined, low_nll_refined   from high_nll's / low_nll's stored stitch of that scan

Shared ground truth. One lines object (``object_size``², complex64) is drawn once from ``seed`` and
passed to ``simulate_dataset(config, obj=obj)`` for every arm; the probe is the package default for N;
train and test scan positions (random, ``buffer`` px from the edge) come from two distinct streams
derived from ``seed``, so test patterns are unseen and every arm sees the same positions and groups.
The Poisson noise stream depends on ``seed``, the dose and the split only: the NLL and MAE arms at one
dose train on *identical* data (a paired design), so their difference is the loss alone.

Each arm trains, saves and evaluates on the package's shared path (``ptycho.workflow``), the same one the
``ptycho`` command uses. One concept per module:

    config.py    ARMS, PRESETS (the preset budgets: edit them here), StudyConfig
    arm.py       one arm: run_arm, its files on disk (arm_files, is_complete, load_arm)
    figures.py   dose_comparison.png, reconstructions.png and methods_comparison.png
    study.py     run_study: every arm, then metrics.json and the figures
    sweep.py     run_sweep: the dose sweep (issue 21 item 3), every method x dose x seed as study arms,
                 then sweep.json and sweep.png
    cli.py       the command line (``scripts/studies/dose_response_study.py``)

Importing this package does no work: TensorFlow, Keras, matplotlib and the model modules are imported
inside the functions that need them.
"""
from ptycho.studies.dose.arm import (ARM_FILES, REFINE_ARM_FILES, ArmResult, arm_dir, arm_files, is_complete,
                                     load_arm, make_ground_truth, run_arm, run_network_arm, run_refine_arm,
                                     write_arm_outputs)
from ptycho.studies.dose.cli import build_parser, config_from_args, main, sweep_config_from_args
from ptycho.studies.dose.config import (ALL_ARM_NAMES, ARM_NAMES, ARMS, DEFAULT_OUTPUT_DIR, DEFAULT_PRESET,
                                        DEFAULT_REFINE_ITERATIONS, DOSES, PRESETS, REFINE_ARMS, REFINE_LOSS,
                                        SWEEP_METHODS, VALIDATION_SPLIT, StudyConfig, arm_method, arm_source,
                                        dose_label, sweep_arm)
from ptycho.studies.dose.sweep_config import DEFAULT_SWEEP_OUTPUT_DIR, SWEEP_DOSES, SWEEP_SEEDS, SweepConfig
from ptycho.studies.dose.figures import (build_dose_figure, build_methods_figure, build_reconstruction_figure,
                                         build_sweep_figure, find_metric)
from ptycho.studies.dose.study import StudyResult, metrics_payload, run_study
from ptycho.studies.dose.sweep import SweepResult, aggregate, crossover, run_sweep, sweep_payload

__all__ = [
    "ARMS", "ARM_NAMES", "ALL_ARM_NAMES", "REFINE_ARMS", "REFINE_LOSS", "DEFAULT_REFINE_ITERATIONS", "ARM_FILES",
    "REFINE_ARM_FILES", "DOSES", "PRESETS", "DEFAULT_PRESET", "DEFAULT_OUTPUT_DIR",
    "VALIDATION_SPLIT", "StudyConfig", "ArmResult", "StudyResult", "run_arm", "run_network_arm", "run_refine_arm",
    "run_study", "main", "build_parser", "config_from_args", "arm_dir", "arm_files", "arm_method", "arm_source",
    "is_complete", "load_arm", "make_ground_truth", "write_arm_outputs", "build_dose_figure",
    "build_methods_figure", "build_reconstruction_figure", "find_metric", "metrics_payload",
    "SWEEP_DOSES", "SWEEP_SEEDS", "SWEEP_METHODS", "DEFAULT_SWEEP_OUTPUT_DIR", "SweepConfig", "SweepResult",
    "dose_label", "sweep_arm", "run_sweep", "sweep_payload", "aggregate", "crossover", "build_sweep_figure",
    "sweep_config_from_args",
]
