#!/usr/bin/env python
"""Dose-response study (SPEC §6): a thin CLI over ``ptycho.studies.dose.main``. Run with ``--help``.

Example: ``python scripts/studies/dose_response_study.py --output-dir runs/dose_response --preset quick``
The dose sweep (issue 21 item 3; resumable, hours): ``python scripts/studies/dose_response_study.py --preset sweep``
"""
import os
import sys
from pathlib import Path

try:
    from ptycho.studies.dose import main
except ModuleNotFoundError as exc:  # run from a source checkout without the package installed
    if exc.name != "ptycho":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from ptycho.studies.dose import main

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TF's C++ start-up chatter in this process
    sys.exit(main())
