"""Per-module mutation scores from a finished ``mutmut run`` (``tox -e mutation`` calls this).

    python scripts/mutation_report.py [--survivors] [--min-score 0.9]

Reads ``mutants/<module>.py.meta`` (mutmut 3's result files). A mutant counts as *detected* when a test
failed (killed), ran past its time limit or crashed the test process; *survived* when every test passed;
*no tests* when no selected test calls its function. The equivalent mutants documented in
``docs/findings.md`` (section "Mutation survivors", one ``- `name` — reason`` item each, read whole by
``findings_ledger`` when wrapped) are reported
separately: ``score`` = detected / all, ``score excl. equivalent`` = detected / (all - documented
equivalents that survived). ``--min-score`` makes the exit status non-zero when a module's score
excluding equivalents is below it (survivors that are neither killed nor justified).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

_SCRIPTS = str(pathlib.Path(__file__).resolve().parent)  # findings_ledger lives here; also when imported by path
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)
import findings_ledger  # noqa: E402  (the one reader of the ledger)

ROOT = findings_ledger.ROOT
DETECTED = {1, 3, 24, -24, 36, 152, 255, -11, -9}
SURVIVED = {0}
NO_TESTS = {5, 33}
EQUIVALENT_LINE = re.compile(r"^- `([\w.ǁ]+__mutmut_\d+)` — (.+)$")


def documented_equivalents(ledger: pathlib.Path) -> dict[str, str]:
    """``{mutant name: reason}`` from the "Mutation survivors" section of the findings ledger."""
    found = {}
    for item in findings_ledger.items(ledger.read_text(encoding="utf-8")):
        match = EQUIVALENT_LINE.match(item.text) if item.section.lower().startswith("mutation survivors") else None
        if match:
            found[match.group(1)] = match.group(2)
    return found


def module_results(mutants_dir: pathlib.Path) -> dict[str, dict[str, int | None]]:
    results = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        module = meta.relative_to(mutants_dir).as_posix()[: -len(".meta")]
        results[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", default=str(ROOT / "mutants"))
    parser.add_argument("--ledger", default=str(ROOT / "docs" / "findings.md"))
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    parser.add_argument("--min-score", type=float, default=None)
    args = parser.parse_args(argv)
    equivalents = documented_equivalents(pathlib.Path(args.ledger))
    results = module_results(pathlib.Path(args.mutants))
    if not results:
        print(f"no mutmut results under {args.mutants}: run `mutmut run` first", file=sys.stderr)
        return 2
    header = f"{'module':32} {'mutants':>7} {'detected':>8} {'survived':>8} {'equiv.':>6} {'no tests':>8} " \
             f"{'unchecked':>9} {'score':>7} {'excl. equiv.':>12}"
    print(header)
    failing = []
    for module, codes in results.items():
        total = len(codes)
        detected = sum(code in DETECTED for code in codes.values())
        survivors = [name for name, code in codes.items() if code in SURVIVED]
        no_tests = [name for name, code in codes.items() if code in NO_TESTS]
        unchecked = sum(code is None for code in codes.values())
        equivalent = [name for name in survivors + no_tests if name in equivalents]
        checked = total - unchecked
        score = detected / checked if checked else 0.0
        excl = detected / (checked - len(equivalent)) if checked - len(equivalent) else 1.0
        print(f"{module:32} {total:7d} {detected:8d} {len(survivors):8d} {len(equivalent):6d} {len(no_tests):8d} "
              f"{unchecked:9d} {score:7.1%} {excl:12.1%}")
        if args.survivors:
            for name in survivors + no_tests:
                note = equivalents.get(name, "NOT JUSTIFIED")
                print(f"    {name}: {'survived' if name in survivors else 'no tests'} — {note}")
        if args.min_score is not None and excl < args.min_score:
            failing.append(module)
    if failing:
        print(f"below {args.min_score:.0%} (excluding documented equivalents): {', '.join(failing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
