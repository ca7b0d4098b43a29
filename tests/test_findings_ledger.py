"""Every test id that docs/findings.md names must exist; pending entries are counted and reported.

The ledger is read by ``scripts/findings_ledger.py``, the one parser that ``scripts/replay_defects.py`` and
``scripts/mutation_report.py`` use too, so every entry is read whole however it is wrapped (LEDGER-WRAPPED-001).
"""
import importlib.util
import pathlib
import re
import sys
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEDGER = ROOT / "docs" / "findings.md"


def _script(name: str):
    """A module of scripts/, loaded by path (scripts/ is not a package) and registered under its name."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ledger = _script("findings_ledger")


def _replay_module():
    return _script("replay_defects")


def test_ledger_has_entries_with_unique_ids():
    text = LEDGER.read_text(encoding="utf-8")
    assert not ledger.format_problems(text)
    ids = [entry.id for entry in ledger.entries(text)]
    assert len(ids) >= 10, f"expected the seeded entries of SPEC §9, found {ids}"
    assert len(ids) == len(set(ids)), f"duplicate ledger ids: {ids}"
    for required in ("MODULE-SINGLETON-001", "TF-NON-XLA-SHAPE-001", "FIX-GRIDSIZE-TRANSLATE-BATCH-001"):
        assert required in ids


def test_every_line_is_at_most_120_bytes():
    """Entries wrap at 120 UTF-8 bytes (so also 120 characters; `awk 'length > 120'` agrees even where awk counts
    bytes): a first line ``- **ID** — ...``, continuation lines indented two spaces."""
    for path in (LEDGER, ROOT / "docs" / "experiments.md"):
        if path.is_file():
            too_long = ledger.long_lines(path.read_text(encoding="utf-8"))
            assert not too_long, f"{path.relative_to(ROOT)}: " + "; ".join(too_long)


def test_every_named_test_exists():
    entries = ledger.read(LEDGER)
    pending = [entry.id for entry in entries if entry.pending]
    if pending:
        warnings.warn(f"{len(pending)} findings-ledger entries are pending a test: {pending}")
    print(f"findings ledger: {len(entries)} entries, {len(pending)} pending")
    problems = ledger.named_test_problems(entries, ROOT)
    assert not problems, "ledger entries name no test or tests that do not exist:\n" + "\n".join(problems)


def test_every_pinned_defect_names_a_patch_and_a_test():
    """Each entry of the Defects section names its test(s) and a planted-defect patch that exists; every patch
    in tests/fixtures/defects/ belongs to an entry (scripts/replay_defects.py replays them)."""
    replay = _replay_module()
    entries = replay.defect_entries(LEDGER)
    assert len(entries) >= 12, [e for e, _, _ in entries]
    problems = []
    for entry_id, tests, patch in entries:
        if not tests:
            problems.append(f"{entry_id}: names no test")
        if patch is None:
            problems.append(f"{entry_id}: names no patch")
            continue
        path = ROOT / patch
        if not path.is_file():
            problems.append(f"{entry_id}: patch {patch} does not exist")
            continue
        text = path.read_text(encoding="utf-8")
        if not re.search(r"^--- a/ptycho/.*\n\+\+\+ b/ptycho/", text, re.M) or entry_id not in text.splitlines()[0]:
            problems.append(f"{entry_id}: {patch} must start with a line naming the entry and patch ptycho/")
    named = {patch for _, _, patch in entries if patch}
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "fixtures" / "defects").glob("*.patch")}
    problems += [f"{p}: no ledger entry names it" for p in sorted(on_disk - named)]
    assert not problems, "\n".join(problems)


def test_experiment_write_ups_belong_to_their_entries():
    """A long write-up moved to docs/experiments.md sits under a heading ``## ID`` that its entry points to
    (``details: docs/experiments.md#ID``), and the tests it names exist."""
    experiments = ROOT / "docs" / "experiments.md"
    problems = ledger.experiment_problems(ledger.read(LEDGER), experiments.read_text(encoding="utf-8"), ROOT)
    assert not problems, "\n".join(problems)
    synthetic = ledger.entries("- **A-001** — x — details: docs/experiments.md#B-001 — pinned by `t.py::t`\n")
    assert ledger.experiment_problems(synthetic, "## C-001\n\ntext\n", ROOT) == [
        "A-001: points to docs/experiments.md#B-001, not to its own ID",
        "A-001: docs/experiments.md has no heading '## B-001'",
        "docs/experiments.md: '## C-001' is not pointed to by ledger entry C-001"]


def test_supersession_markers_open_their_entry_and_name_existing_entries():
    entries = ledger.read(LEDGER)
    problems = ledger.supersession_problems(entries)
    assert not problems, "\n".join(problems)
    marked = {e.id: e.superseded_by for e in entries if e.superseded_by}
    assert marked["TRAINING-BUDGET-001"] and marked["CLI-RECON-FILES-001"] == ("CLI-OUTPUTS-ASKED-001",)
    synthetic = ledger.entries(
        "- **OLD-001** — (superseded by NEW-001, GONE-001: why) (decision) x — pinned by `t.py::t`\n"
        "- **NEW-001** — (decision; supersedes OLD-001's x and LATE-001) y — pinned by `t.py::t`\n"
        "- **LATE-001** — (decision) z (superseded by NEW-001: at the end) — pinned by `t.py::t`\n"
        "- **SELF-001** — (partly superseded by SELF-001 and lower-case: x) — pinned by `t.py::t`\n"
        "- **QUOTE-001** — (decision) quotes `(superseded by GONE-001: y)` — pinned by `t.py::t`\n")
    assert ledger.supersession_problems(synthetic) == [
        "OLD-001: superseded by GONE-001, which is not another entry of the ledger",
        "LATE-001: the '(superseded by ...)' marker must open the entry",
        "SELF-001: '(partly superseded by SELF-001 and lower-case:' must name entry IDs only",
        "SELF-001: superseded by SELF-001, which is not another entry of the ledger"]


def test_wrapped_entries_are_read_whole():
    text = "- **A-001** — symptom\n  more — pinned by `tests/x.py::test_a`,\n  `tests/y.py::test_b`\n\nprose\n"
    (entry,) = ledger.entries(text)
    assert entry.tests == ("tests/x.py::test_a", "tests/y.py::test_b")
    assert entry.text.endswith("pinned by `tests/x.py::test_a`, `tests/y.py::test_b`")


# A synthetic ledger: every entry is wrapped, and the test or patch each names sits on a continuation line.
SYNTHETIC = """# Findings ledger

## Defects of the reference implementation

- **D-001** — a defect — its cause — its fix — pinned by
  `tests/test_here.py::test_exists`; patch
  `tests/fixtures/defects/d.patch`
- **D-002** — another defect, wrapped
lazily (an unindented continuation is still the entry's, as in Markdown) — pinned by
`tests/test_here.py::test_exists`,
  `tests/test_here.py::test_that_was_deleted`; patch `tests/fixtures/defects/e.patch`

## Decisions

Prose between entries.

- **W-001** — (decision) wrapped over three lines — the named test is on the last one and does
  not exist — the check must see it — pinned by `tests/test_here.py::test_exists`,
  `tests/test_here.py::test_that_does_not_exist`
- **W-002** — (decision) says which test pins it nowhere, over
  two lines
- **W-003** — (decision) not written yet — pinned by pending
- **W-004** — (decision) names a test in a file that is not there — pinned by
  `tests/test_gone.py::test_exists`

## Mutation survivors (equivalent mutants)

- `ptycho.data.x__read_key__mutmut_6` — unreachable: a reason long enough to be wrapped onto
  a second line
- `ptycho.data.x__read_key__mutmut_7` — one line
"""


def _synthetic_tree(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_here.py").write_text("def test_exists():\n    pass\n")
    path = tmp_path / "findings.md"
    path.write_text(SYNTHETIC, encoding="utf-8")
    return path


def test_a_wrapped_entry_naming_a_missing_test_is_reported(tmp_path):
    """The checker must not skip the "pinned by" part of an entry wrapped over several lines: a test named on a
    continuation line that does not exist is reported, as is an entry that names none (LEDGER-WRAPPED-001)."""
    path = _synthetic_tree(tmp_path)
    entries = ledger.read(path)
    assert [e.id for e in entries] == ["D-001", "D-002", "W-001", "W-002", "W-003", "W-004"]
    problems = ledger.named_test_problems(entries, tmp_path)
    assert problems == ["D-002: tests/test_here.py::test_that_was_deleted does not exist",
                        "W-001: tests/test_here.py::test_that_does_not_exist does not exist",
                        "W-002: names no test id after its last 'pinned by'",
                        "W-004: tests/test_gone.py::test_exists does not exist"]
    assert [e.id for e in entries if e.pending] == ["W-003"]


def test_replay_and_mutation_report_read_wrapped_items_through_the_same_parser(tmp_path):
    path = _synthetic_tree(tmp_path)
    assert _replay_module().defect_entries(path) == [
        ("D-001", ["tests/test_here.py::test_exists"], "tests/fixtures/defects/d.patch"),
        ("D-002", ["tests/test_here.py::test_exists", "tests/test_here.py::test_that_was_deleted"],
         "tests/fixtures/defects/e.patch")]
    assert _script("mutation_report").documented_equivalents(path) == {
        "ptycho.data.x__read_key__mutmut_6": "unreachable: a reason long enough to be wrapped onto a second line",
        "ptycho.data.x__read_key__mutmut_7": "one line"}


def test_a_malformed_entry_head_is_reported_not_skipped():
    assert ledger.format_problems("## Decisions\n\n- **lower-case-001** — (decision) x — pinned by `t.py::t`\n")
    assert not ledger.format_problems("- **UPPER-001** — (decision) x — pinned by `t.py::t`\n")


def test_every_planted_defect_patch_still_applies_to_the_tree():
    """DEFECT-REPLAY-001's replay fails late (after 18 minutes) on a patch the code has moved away from; two had
    drifted unnoticed (PATCH-DRIFT-001). ``git apply --check`` of each patch against the working tree is instant."""
    import shutil
    import subprocess

    import pytest

    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.fail("this check needs git and a git checkout of the repository")
    stale = []
    for patch in sorted((ROOT / "tests" / "fixtures" / "defects").glob("*.patch")):
        proc = subprocess.run([git, "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            stale.append(f"{patch.name}: {proc.stderr.strip()}")
    assert not stale, "patches that no longer apply (rewrite them against the current code):\n" + "\n".join(stale)
