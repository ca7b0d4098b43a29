"""The one reader of ``docs/findings.md``: its list items read whole, its entries and what they name.

``tests/test_findings_ledger.py``, ``scripts/replay_defects.py`` and ``scripts/mutation_report.py`` all read the
ledger through this module, so a wrapped entry is read the same way everywhere (LEDGER-WRAPPED-001: one copy of
a one-line regex per reader once skipped every wrapped entry's tests and patches).

The format (Markdown): ``## Section`` headings; an item is a line starting ``- `` at column 0 plus every line
that follows it up to a blank line, a heading or the next item (continuation lines are indented two spaces;
an unindented line that follows directly is Markdown's lazy continuation and belongs to the item too, as do
indented lines after a blank line). An item's text is its lines, stripped, joined by single spaces. A ledger
entry is an item ``- **ID** — ...`` whose last ``pinned by`` names its tests (`` `file::name` ``) or says
``pinned by pending``; a Defects entry then names its planted-defect ``patch `tests/fixtures/defects/x.patch```.
An entry that a later one replaces opens with ``(superseded by NEW-ID: reason)`` (or ``(partly superseded by
...)``, several IDs separated by commas or "and"); an entry that says ``supersedes OLD-ID`` must be named by
OLD-ID's marker. A long measurement write-up may live in ``docs/experiments.md`` under a heading ``## ID``; the
entry then says ``details: docs/experiments.md#ID``. Markers, "supersedes" and pointers are read outside code
spans, which may quote the syntax.
"""
from __future__ import annotations

import ast
import pathlib
import re
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEDGER = ROOT / "docs" / "findings.md"
EXPERIMENTS = ROOT / "docs" / "experiments.md"
MAX_LINE_BYTES = 120  # UTF-8 bytes, so a byte-counting `awk 'length > 120'` (mawk) agrees

ENTRY_HEAD = re.compile(r"^- \*\*([A-Z0-9-]+)\*\* — ")
NODE_ID = re.compile(r"`([^`]+::[^`]+)`")
PATCH = re.compile(r"patch `(tests/fixtures/defects/[\w.-]+\.patch)`")
ENTRY_ID = r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-\d{3}"
MARKER = re.compile(r"\((?:partly )?superseded by ([^:()]*):")
SUPERSEDES = re.compile(rf"\bsupersedes ({ENTRY_ID}(?:(?:, | and ){ENTRY_ID})*)")
DETAILS = re.compile(r"docs/experiments\.md#([A-Za-z0-9-]+)")
EXPERIMENT_HEADING = re.compile(rf"^## ({ENTRY_ID})\s*$", re.M)


@dataclass(frozen=True)
class Item:
    """One top-level list item: the section it is in, the number of its first line, its text read whole."""
    section: str
    line: int
    text: str


@dataclass(frozen=True)
class Entry:
    """One ledger entry (an item ``- **ID** — ...``)."""
    id: str
    section: str
    line: int
    text: str
    pending: bool
    tests: tuple[str, ...]
    patch: str | None
    superseded_by: tuple[str, ...]
    supersedes: tuple[str, ...]

    @property
    def body(self) -> str:
        """The text after ``- **ID** — ``."""
        return ENTRY_HEAD.sub("", self.text, count=1)


def items(text: str) -> list[Item]:
    """Every top-level ``- `` list item of ``text``, wrapped lines joined (see the module docstring)."""
    found: list[Item] = []
    section, lines, start, blank, fenced = "", None, 0, False, False

    def close():
        if lines is not None:
            found.append(Item(section, start, " ".join(part.strip() for part in lines)))

    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            close()
            lines = None
            continue
        if fenced:
            continue
        if line.startswith("#"):
            close()
            lines, section = None, line.lstrip("#").strip()
        elif line.startswith("- "):
            close()
            lines, start, blank = [line], number, False
        elif not line.strip():
            blank = True
        elif lines is not None and (line.startswith(" ") or not blank):
            lines.append(line)
            blank = False
        else:  # prose after a blank line ends the item
            close()
            lines = None
    close()
    return found


def _ids(text: str) -> tuple[str, ...]:
    return tuple(re.findall(ENTRY_ID, text))


def prose(text: str) -> str:
    """``text`` with the inside of every `code span` removed: a span that quotes the ledger's syntax is no marker."""
    return re.sub(r"`[^`]*`", "``", text)


def parse_entry(item: Item) -> Entry | None:
    """The entry an item holds, or None when it is not ``- **ID** — ...``."""
    head = ENTRY_HEAD.match(item.text)
    if not head:
        return None
    text = item.text
    at = text.rfind("pinned by ")
    tail = text[at + len("pinned by "):] if at >= 0 else ""
    patch = PATCH.search(tail)
    return Entry(
        id=head.group(1), section=item.section, line=item.line, text=text,
        pending=at >= 0 and tail.startswith("pending"),
        tests=tuple(NODE_ID.findall(tail.split("patch `")[0])),
        patch=patch.group(1) if patch else None,
        superseded_by=tuple(i for m in MARKER.finditer(prose(text)) for i in _ids(m.group(1))),
        supersedes=tuple(i for m in SUPERSEDES.finditer(prose(text)) for i in _ids(m.group(1))))


def entries(text: str) -> list[Entry]:
    """Every ledger entry of ``text``, in order."""
    return [e for e in map(parse_entry, items(text)) if e is not None]


def read(path: pathlib.Path = LEDGER) -> list[Entry]:
    return entries(path.read_text(encoding="utf-8"))


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


test_names.__test__ = False  # a helper, not a test (pytest collects names imported into test modules)


def missing_tests(node_ids, root: pathlib.Path = ROOT) -> list[str]:
    """The node ids (``file::name``) whose file does not exist under ``root`` or does not define the name."""
    missing, cache = [], {}
    for node_id in node_ids:
        file_part, _, name = node_id.partition("::")
        path = root / file_part
        if path not in cache:
            cache[path] = test_names(path) if path.is_file() else set()
        if name not in cache[path]:
            missing.append(node_id)
    return missing


def format_problems(text: str) -> list[str]:
    """Items that look like entries but are not ``- **ID** — ...``: they would be skipped silently."""
    return [f"line {item.line}: an entry starts `- **ID** — ` (ID of A-Z, 0-9 and -): {item.text[:60]}"
            for item in items(text) if item.text.startswith("- **") and not ENTRY_HEAD.match(item.text)]


def named_test_problems(all_entries, root: pathlib.Path = ROOT) -> list[str]:
    """Entries that name no test (unless pending) or name a test that does not exist."""
    problems = []
    for entry in all_entries:
        if not entry.tests and not entry.pending:
            problems.append(f"{entry.id}: names no test id after its last 'pinned by'")
        problems += [f"{entry.id}: {node_id} does not exist" for node_id in missing_tests(entry.tests, root)]
    return problems


def supersession_problems(all_entries) -> list[str]:
    """Markers that name no or unknown entries or do not open their entry; "supersedes X" that X does not
    acknowledge with a marker naming the newer entry."""
    by_id = {e.id: e for e in all_entries}
    problems = []
    for entry in all_entries:
        for match in MARKER.finditer(prose(entry.text)):
            named = _ids(match.group(1))
            rest = re.sub(ENTRY_ID, "", match.group(1)).replace(",", " ").replace(" and ", " ").strip()
            if not named or rest:
                problems.append(f"{entry.id}: '{match.group(0)}' must name entry IDs only")
            if not prose(entry.body).startswith(match.group(0)):
                problems.append(f"{entry.id}: the '(superseded by ...)' marker must open the entry")
        for new_id in entry.superseded_by:
            if new_id == entry.id or new_id not in by_id:
                problems.append(f"{entry.id}: superseded by {new_id}, which is not another entry of the ledger")
        for old_id in entry.supersedes:
            if old_id not in by_id:
                problems.append(f"{entry.id}: supersedes {old_id}, which is not an entry of the ledger")
            elif entry.id not in by_id[old_id].superseded_by:
                problems.append(f"{entry.id}: supersedes {old_id}, whose start does not say "
                                f"'(superseded by {entry.id}: ...)' or '(partly superseded by ...)'")
    return problems


def experiment_problems(all_entries, experiments_text: str, root: pathlib.Path = ROOT) -> list[str]:
    """Each ``details: docs/experiments.md#ID`` is the entry's own ID and a heading ``## ID`` there; each
    such heading belongs to an entry that points to it; every test the write-ups name exists."""
    headings = EXPERIMENT_HEADING.findall(experiments_text)
    problems = [f"docs/experiments.md: heading {h} appears twice" for h in sorted(set(headings))
                if headings.count(h) > 1]
    pointed = set()
    for entry in all_entries:
        for target in DETAILS.findall(prose(entry.text)):
            pointed.add(target)
            if target != entry.id:
                problems.append(f"{entry.id}: points to docs/experiments.md#{target}, not to its own ID")
            if target not in headings:
                problems.append(f"{entry.id}: docs/experiments.md has no heading '## {target}'")
    problems += [f"docs/experiments.md: '## {h}' is not pointed to by ledger entry {h}"
                 for h in headings if h not in pointed]
    problems += [f"docs/experiments.md: {node_id} does not exist"
                 for node_id in missing_tests(dict.fromkeys(NODE_ID.findall(experiments_text)), root)]
    return problems


def long_lines(text: str, limit: int = MAX_LINE_BYTES) -> list[str]:
    """``line N: B bytes`` for every line longer than ``limit`` UTF-8 bytes."""
    return [f"line {n}: {len(line.encode())} bytes" for n, line in enumerate(text.splitlines(), 1)
            if len(line.encode()) > limit]
