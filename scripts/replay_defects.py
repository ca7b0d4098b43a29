"""Planted-defect replay: does the suite catch each defect the findings ledger says it pins?

    python scripts/replay_defects.py [--ref REV] [--only NAME ...] [--timeout S]

For every entry of the "Defects" section of ``docs/findings.md`` that names a patch
(``patch `tests/fixtures/defects/<name>.patch```), this script

1. copies the tree (the working tree's tracked and unignored files, or ``git archive REV`` with ``--ref``) to a
   temporary folder and runs every test the ledger names there, unpatched: the clean tree must pass;
2. applies each patch to a copy (``git apply``), runs the tests the ledger names for it (fail-fast), prints
   one line ``caught``/``MISSED`` with the test that caught it, and reverts the patch. ``--jobs`` defects
   (default 2) are replayed at once, each in its own copy of the tree.

A patch that no longer applies (the code it plants a defect in has changed) is reported as
``PATCH NO LONGER APPLIES``: rewrite the patch against the new code, never delete it. The exit status is
non-zero if the clean tree fails, a patch does not apply, or any defect is missed. ``tox -e defects`` runs it.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time

_SCRIPTS = str(pathlib.Path(__file__).resolve().parent)  # findings_ledger lives here; also when imported by path
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)
import findings_ledger  # noqa: E402  (the one reader of the ledger, shared with its test)

ROOT = findings_ledger.ROOT
LEDGER = findings_ledger.LEDGER
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+::\S+?)(?: - .*)?$")


def defect_entries(ledger: pathlib.Path = LEDGER) -> list[tuple[str, list[str], str | None]]:
    """(entry id, [test node ids], patch path or None) for every entry of the ledger's "Defects" section,
    each entry read whole (``findings_ledger``)."""
    return [(e.id, list(e.tests), e.patch) for e in findings_ledger.read(ledger)
            if e.section.lower().startswith("defects")]


def replay_plan(entries) -> dict[str, tuple[list[str], list[str]]]:
    """patch -> (entry ids, test ids in ledger order, without duplicates); entries may share a patch."""
    plan: dict[str, tuple[list[str], list[str]]] = {}
    for entry_id, tests, patch in entries:
        if patch is None:
            continue
        ids, node_ids = plan.setdefault(patch, ([], []))
        ids.append(entry_id)
        node_ids.extend(t for t in tests if t not in node_ids)
    return plan


def copy_tree(dest: pathlib.Path, ref: str | None) -> None:
    if ref:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        return
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_tests(tree: pathlib.Path, node_ids: list[str], timeout: float, fail_fast: bool, workers: int):
    """Run pytest on ``node_ids`` inside ``tree``; return (exit code, failed node ids, output tail)."""
    env = dict(os.environ, PYTHONPATH=str(tree), CI="true", TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-o", "addopts=--strict-markers"]
    if fail_fast:
        cmd.append("-x")
    if workers > 1:
        cmd += ["-n", str(workers)]
    try:
        proc = subprocess.run(cmd + node_ids, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, [], out[-3000:]
    out = proc.stdout + proc.stderr
    failed = [m.group(1) for m in map(FAILED_LINE.match, out.splitlines()) if m]
    return proc.returncode, failed, out[-3000:]


def apply_patch(tree: pathlib.Path, patch: pathlib.Path, reverse: bool = False) -> tuple[bool, str]:
    cmd = ["git", "apply", "--whitespace=nowarn"] + (["-R"] if reverse else []) + [str(patch)]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def replay_one(tree: pathlib.Path, patch: str, entry_ids: list[str], tests: list[str], args,
               clean_failures: set[str]) -> tuple[str, str | None]:
    """Plant ``patch`` in ``tree``, run its ledger tests (fail-fast), revert; return (report line, problem)."""
    t0 = time.monotonic()
    label = f"{pathlib.Path(patch).stem:28} [{', '.join(entry_ids)}]"
    patch_file = ROOT / patch
    if not patch_file.is_file():
        return f"{label}: PATCH FILE MISSING ({patch})", f"{patch}: missing"
    ok, message = apply_patch(tree, patch_file)
    if not ok:
        return (f"{label}: PATCH NO LONGER APPLIES -- the code it plants the defect in has changed; rewrite "
                f"{patch} against it\n    {message}", f"{patch}: no longer applies")
    try:
        code, failed, tail = run_tests(tree, tests, args.timeout, fail_fast=True, workers=1)
    finally:
        reverted, message = apply_patch(tree, patch_file, reverse=True)
        if not reverted:
            shutil.rmtree(tree)
            tree.mkdir()
            copy_tree(tree, args.ref)
    seconds = time.monotonic() - t0
    if code is None:
        return f"{label}: MISSED (tests timed out after {args.timeout:.0f} s) [{seconds:.0f} s]", f"{patch}: timeout"
    if code == 1 and failed and failed[0] in clean_failures:
        return (f"{label}: UNPROVEN -- {failed[0]} fails on the clean tree too [{seconds:.0f} s]",
                f"{patch}: caught only by a test that fails without the defect")
    if code == 1 and failed:
        return f"{label}: caught by {failed[0]} [{seconds:.0f} s]", None
    if code == 0:
        return (f"{label}: MISSED -- {len(tests)} test(s) passed with the defect planted [{seconds:.0f} s]",
                f"{patch}: missed")
    return (f"{label}: MISSED -- pytest exit {code} without a failing ledger test [{seconds:.0f} s]\n{tail}",
            f"{patch}: pytest exit {code}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="replay against this git revision instead of the working tree")
    parser.add_argument("--only", nargs="*", help="patch names (without .patch) to replay")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers for the clean run")
    parser.add_argument("--jobs", type=int, default=2,
                        help="defects replayed at once, each in its own copy of the tree (default 2: one per core)")
    args = parser.parse_args(argv)

    entries = defect_entries()
    unpatched = [entry_id for entry_id, _, patch in entries if patch is None]
    plan = replay_plan(entries)
    if args.only:
        plan = {p: v for p, v in plan.items() if pathlib.Path(p).stem in args.only}
    problems = [f"ledger entry {e} names no patch" for e in unpatched]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ptycho-defects-") as tmp:
        tree = pathlib.Path(tmp) / "job0"
        tree.mkdir()
        copy_tree(tree, args.ref)
        all_tests = list(dict.fromkeys(t for _, tests in plan.values() for t in tests))
        code, failed, tail = run_tests(tree, all_tests, args.timeout, fail_fast=False, workers=args.workers)
        clean_ok = code == 0
        clean_failures = set(failed)
        print(f"clean tree: {'pass' if clean_ok else 'FAIL'} ({len(all_tests)} ledger tests, "
              f"{time.monotonic() - start:.0f} s)", flush=True)
        if not clean_ok:
            print(tail)
            problems.append("clean tree fails the ledger's tests" + (f": {failed}" if failed else ""))
        trees = queue.Queue()
        trees.put(tree)
        for k in range(1, max(1, args.jobs)):
            extra = pathlib.Path(tmp) / f"job{k}"
            extra.mkdir()
            copy_tree(extra, args.ref)
            trees.put(extra)

        def replay_in_free_tree(item):
            patch, (entry_ids, tests) = item
            job_tree = trees.get()
            try:
                return replay_one(job_tree, patch, entry_ids, tests, args, clean_failures)
            finally:
                trees.put(job_tree)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for line, problem in pool.map(replay_in_free_tree, plan.items()):
                print(line, flush=True)
                if problem:
                    problems.append(problem)
    print(f"{len(plan)} defects replayed in {time.monotonic() - start:.0f} s; "
          f"{'all caught' if not problems else 'problems: ' + '; '.join(problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
