"""The manual against the code: the names, commands, flags and links that README.md, docs/
and the bench log give (each of these once named something that did not exist)."""

import argparse
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "results" / "bench" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]


def _resolve(dotted: str):
    """The object `dotted` names: its longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("doc", [d for d in DOCS if d.name != "CHANGELOG.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_name_the_docs_give_exists(doc):
    """`trainscape.a.b` in backticks and `from trainscape.a import b` in examples (not in the
    changelog, whose history names what was renamed)."""
    text = doc.read_text()
    names = set(re.findall(r"`(trainscape(?:\.[A-Za-z_]\w*)+)", text))
    for module, imported in re.findall(r"^\s*from (trainscape[\w.]*) import ([\w, ]+)", text,
                                       re.M):
        names |= {f"{module}.{n.strip()}" for n in imported.split(",") if n.strip()}
    assert names or doc.name != "guide.md"
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, missing


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for title in re.findall(r"^#+ (.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        f = (doc.parent / path).resolve() if path else doc
        if not f.exists() or anchor and f.suffix == ".md" and anchor not in _anchors(
                f.read_text()):
            broken.append(target)
    assert not broken, broken


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md"])
def test_the_command_line_synopsis_names_every_command_and_flag(doc):
    """The `## Command line` block of README and guide against the parser itself (both once
    lacked whole commands and flags)."""
    from trainscape.cli.main import build_parser

    text = (ROOT / doc).read_text()
    block = re.search(r"## Command line\n+```\n(.*?)```", text, re.S).group(1)
    synopsis = {}  # command -> its lines
    for line in block.splitlines():
        if line.startswith("trainscape "):
            command = line.split()[1]
        synopsis[command] = synopsis.get(command, "") + line
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(synopsis) == set(sub.choices), doc
    for command, parser in sub.choices.items():
        flags = {o for a in parser._actions for o in a.option_strings
                 if o.startswith("--") and o != "--help"}
        missing = {f for f in flags if not re.search(re.escape(f) + r"\b", synopsis[command])}
        assert not missing, (doc, command, missing)


def test_the_guide_names_every_public_name():
    import trainscape as ts

    text = " ".join((ROOT / "docs" / "guide.md").read_text().split())
    public = text[text.index("The public names:"):][:1200]
    missing = [n for n in ts.__all__ if n != "__version__" and f"`ts.{n}`" not in public]
    assert not missing, missing


def test_the_guide_explains_every_key_of_meta_json(tmp_path):
    import trainscape as ts

    ts.run({"data": {"name": "moons", "n_samples": 16}, "model": {"hidden": [2]},
            "train": {"steps": 2}, "sweep": {"seed": [0]}}, out=tmp_path / "r", progress=False)
    import json

    keys = json.loads((tmp_path / "r" / "meta.json").read_text())
    text = (ROOT / "docs" / "guide.md").read_text()
    table = text[text.index("`meta.json`:\n\n| key | meaning |"):].split("\n\n")[1]
    explained = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", table, re.M))
    explained = {k for pair in explained for k in pair if k}
    assert set(keys) <= explained, set(keys) - explained
