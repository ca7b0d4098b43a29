"""Every test id that docs/findings.md names must exist; pending entries are counted and reported."""
import ast
import pathlib
import re
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEDGER = ROOT / "docs" / "findings.md"
ENTRY = re.compile(r"^- \*\*([A-Z0-9-]+)\*\* — .*pinned by (pending )?(.+)$", re.DOTALL)
NODE_ID = re.compile(r"`([^`]+::[^`]+)`")


def entry_texts(text: str) -> list[str]:
    """Each ledger entry as one string: a ``- **ID**`` line joined with its indented continuation lines."""
    entries = []
    for line in text.splitlines():
        if line.startswith("- **"):
            entries.append(line)
        elif entries and line.startswith("  ") and line.strip():
            entries[-1] += " " + line.strip()
        elif entries and entries[-1] is not None:
            entries.append(None)  # anything else ends the entry
    return [e for e in entries if e is not None]


def ledger_entries():
    """Yield (entry id, pending?, [node ids]) for every ledger entry (wrapped entries are read whole)."""
    for line in entry_texts(LEDGER.read_text(encoding="utf-8")):
        match = ENTRY.match(line)
        if match:
            yield match.group(1), bool(match.group(2)), NODE_ID.findall(match.group(3))


def test_names(path: pathlib.Path) -> set[str]:
    """Names of module-level test functions and ``Class::method`` pairs defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names


test_names.__test__ = False  # a helper, not a test


def test_ledger_has_entries_with_unique_ids():
    ids = [entry_id for entry_id, _, _ in ledger_entries()]
    assert len(ids) >= 10, f"expected the seeded entries of SPEC §9, found {ids}"
    assert len(ids) == len(set(ids)), f"duplicate ledger ids: {ids}"
    for required in ("MODULE-SINGLETON-001", "TF-NON-XLA-SHAPE-001", "FIX-GRIDSIZE-TRANSLATE-BATCH-001"):
        assert required in ids


def test_every_named_test_exists():
    missing, pending = [], []
    for entry_id, is_pending, node_ids in ledger_entries():
        assert node_ids, f"{entry_id}: names no test id"
        if is_pending:
            pending.append(entry_id)
            continue
        for node_id in node_ids:
            file_part, _, name = node_id.partition("::")
            path = ROOT / file_part
            if not path.is_file() or name not in test_names(path):
                missing.append(f"{entry_id}: {node_id}")
    if pending:
        warnings.warn(f"{len(pending)} findings-ledger entries are pending a test: {pending}")
    print(f"findings ledger: {len(pending)} pending")
    assert not missing, "ledger names tests that do not exist:\n" + "\n".join(missing)


def _replay_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_defects", ROOT / "scripts" / "replay_defects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_wrapped_entries_are_read_whole():
    text = "- **A-001** — symptom\n  more — pinned by `tests/x.py::test_a`,\n  `tests/y.py::test_b`\n\nprose\n"
    (entry,) = entry_texts(text)
    match = ENTRY.match(entry)
    assert match and NODE_ID.findall(match.group(3)) == ["tests/x.py::test_a", "tests/y.py::test_b"]
