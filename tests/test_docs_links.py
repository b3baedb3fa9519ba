"""Docstrings, help texts and docs point only to documents that ship in the repository.

The design notes and reference formulas live in a steering folder that users never see; a
pointer to ``DESIGN.md`` or ``reference/formulas.md`` sends a reader nowhere. Every
``docs/<name>.md`` (and ``docs/<name>.md#anchor``) named in the sources must exist, and so must
every relative link between the docs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED = ("src", "docs", "benchmarks")

#: Documents outside the repository (the team's steering folder).
FORBIDDEN = re.compile(r"DESIGN\.md|reference/(?:formulas|interfaces|offline-assets)\.md")
#: "formulas.md §7": a section number of the steering notes, meaningless in docs/formulas.md.
OLD_SECTION = re.compile(r"formulas\.md\s*§")
#: a doc named from code: docs/name.md, optionally with an #anchor
DOC_POINTER = re.compile(r"docs/([A-Za-z0-9_.-]+?\.md)(?:#([A-Za-z0-9_-]+))?")
#: a bare "name.md" in code that is not prefixed by docs/ (formulas.md, interfaces.md, …)
BARE_DOC = re.compile(r"(?<![/\w])(formulas|contracts|integrations|shaping|interfaces|offline-assets)\.md")
#: a relative Markdown link between docs: ](name.md) or ](name.md#anchor)
MD_LINK = re.compile(r"\]\((?!https?:)([A-Za-z0-9_.-]+\.md)?(?:#([A-Za-z0-9_-]+))?\)")


def _text_files(top: str) -> list[Path]:
    base = ROOT / top
    if not base.exists():
        return []
    out = []
    for path in sorted(base.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".so", ".parquet", ".gz"):
            continue
        try:
            path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        out.append(path)
    return out


def _lines(top: str):
    for path in _text_files(top):
        for no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            yield path, no, line


def _where(path: Path, no: int) -> str:
    return f"{path.relative_to(ROOT)}:{no}"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    out: set[str] = set()
    in_code = False
    for line in doc.read_text("utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(slug(line))
    return out


def test_slug_matches_github():
    assert slug("## GDPO aggregation") == "gdpo-aggregation"
    assert slug(" ICD-10-CM code F1") == "icd-10-cm-code-f1"
    assert slug(" Group advantages (`shape/advantages.py`)") == "group-advantages-shapeadvantagespy"


@pytest.mark.parametrize("top", SCANNED)
def test_no_pointer_to_documents_outside_the_repository(top):
    bad = [f"{_where(p, n)}: {line.strip()}" for p, n, line in _lines(top) if FORBIDDEN.search(line)]
    assert not bad, "points to a document users never see; use docs/contracts.md or docs/formulas.md:\n" + "\n".join(bad)


@pytest.mark.parametrize("top", SCANNED)
def test_no_section_numbers_of_the_steering_notes(top):
    bad = [f"{_where(p, n)}: {line.strip()}" for p, n, line in _lines(top) if OLD_SECTION.search(line)]
    assert not bad, "'formulas.md §N' names a section of notes outside the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("top", ("src", "benchmarks"))
def test_code_names_docs_by_their_path(top):
    """In code, a doc is named ``docs/formulas.md``, so a reader knows where to look."""
    bad = [f"{_where(p, n)}: {line.strip()}" for p, n, line in _lines(top) if BARE_DOC.search(line)]
    assert not bad, "name the doc as docs/<name>.md:\n" + "\n".join(bad)


@pytest.mark.parametrize("top", ("src", "benchmarks"))
def test_every_doc_named_in_code_exists(top):
    missing = []
    for path, no, line in _lines(top):
        for name, anchor in DOC_POINTER.findall(line):
            doc = DOCS / name
            if not doc.is_file():
                missing.append(f"{_where(path, no)}: docs/{name} does not exist")
            elif anchor and anchor not in anchors(doc):
                missing.append(f"{_where(path, no)}: docs/{name} has no section #{anchor}")
    assert not missing, "\n".join(missing)


def test_links_between_docs_resolve():
    missing = []
    for doc in _text_files("docs"):
        if doc.suffix != ".md":
            continue
        for no, line in enumerate(doc.read_text("utf-8").splitlines(), start=1):
            for name, anchor in MD_LINK.findall(line):
                target = DOCS / name if name else doc
                if not target.is_file():
                    missing.append(f"{_where(doc, no)}: {name} does not exist")
                elif anchor and anchor not in anchors(target):
                    missing.append(f"{_where(doc, no)}: {target.name} has no section #{anchor}")
    assert not missing, "\n".join(missing)


def test_contract_and_formula_docs_cover_every_component_kind():
    """docs/formulas.md documents every registered kind; docs/contracts.md every status."""
    from medreward.records import Status
    from medreward.rewards import registered_kinds

    formulas = (DOCS / "formulas.md").read_text("utf-8")
    undocumented = [kind for kind in registered_kinds() if f"Kind `{kind}`" not in formulas]
    assert not undocumented, f"docs/formulas.md lacks a section for kinds {undocumented}"
    contracts = (DOCS / "contracts.md").read_text("utf-8")
    assert all(f"`{s.value}`" in contracts for s in Status)
