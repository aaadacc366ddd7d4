"""The manual against the code: the names, commands, flags and links that README.md, docs/
and the bench log give (each of these once named something that did not exist)."""

import argparse
import importlib
import math
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


def _doc_value(text: str):
    """A default as the guide's config table writes it: `true`, `0.1`, `[128, 64]`, `"y"`,
    `none (full batch)`, `–` (no default) ..."""
    text = text.strip().strip("`").strip()
    if text in ("–", "") or text.split(" ")[0] == "none":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("["):
        return tuple(int(v) for v in text.strip("[]").split(",") if v.strip())
    try:
        return float(text)
    except ValueError:
        return text.strip('"')


def _per_dataset(text: str) -> dict:
    """'0.1 (moons, circles), 1.0 (blobs)' -> {'moons': 0.1, 'circles': 0.1, 'blobs': 1.0}."""
    out = {}
    for value, names in re.findall(r"([^,()]+?) \(([^)]*)\)", text):
        out |= {n.strip(): _doc_value(value) for n in names.split(",")}
    return out


def test_the_guide_gives_every_config_key_with_its_default():
    """The `## Config` table against the schema: every key of every section is there, and the
    default it gives is the one the code uses (schema.py, and registry.DATA_DEFAULTS for the
    [data] keys whose default depends on the dataset)."""
    from trainscape.spec import registry, schema

    text = (ROOT / "docs" / "guide.md").read_text()
    table = text[text.index("| section | key | default | meaning |"):].split("\n\n")[0]
    given = {}  # (section, key) -> the default as written
    section = ""
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        section = cells[0].strip("`[]") or section
        keys = re.findall(r"`(\w+)`", cells[1])
        if not keys:  # [sweep]: axes, not keys
            continue
        defaults = [cells[2]] if len(keys) == 1 else cells[2].split(",")
        assert len(defaults) == len(keys), row
        given |= {(section, k): d for k, d in zip(keys, defaults, strict=True)}
    fields = {("", "name"): schema.Experiment.model_fields["name"]} | {
        (sec, k): f for sec, cls in schema._SECTIONS.items() for k, f in cls.model_fields.items()}
    assert set(fields) <= set(given), set(fields) - set(given)
    wrong = []
    for (sec, key), field in fields.items():
        doc = given[(sec, key)]
        if (sec, key) == ("metrics", "accuracy"):  # None: "on for classification losses"
            assert field.default is None and "bce" in doc and "cross_entropy" in doc
            continue
        if (sec, key) == ("data", "name"):  # None: the built-in breast_cancer
            expected = "breast_cancer"
        elif sec == "data" and key in registry.DATA_DEFAULTS:
            expected = registry.DATA_DEFAULTS[key]
        else:
            expected = field.default
        got = _per_dataset(doc) if isinstance(expected, dict) else _doc_value(doc)
        if isinstance(expected, dict):
            expected = {n: float(v) for n, v in expected.items()}
        elif isinstance(expected, int | float) and not isinstance(expected, bool):
            expected = float(expected)
        if got != expected:
            wrong.append(f"{sec}.{key}: guide {doc!r}, code {expected!r}")
    assert not wrong, wrong


def test_the_optimizer_axes_table_gives_the_codes_defaults_and_users():
    """generality.md's `| axis | optimizers | default |` against OptimizerConfig's defaults
    and registry.OPTIMIZERS (which optimizers read each key)."""
    from trainscape.spec import registry, schema

    text = (ROOT / "docs" / "generality.md").read_text()
    table = text[text.index("| axis | optimizers | default |"):].split("\n\n")[0]
    fields = schema.OptimizerConfig.model_fields
    seen, wrong = set(), []
    for row in table.splitlines()[2:]:
        axes, users, default = (c.strip() for c in row.strip("|").split("|"))
        keys = [k for k in re.findall(r"`([\w.]+)`", axes) if k in fields]
        values = [default] if len(keys) == 1 else default.split(",")
        named = set(re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", users)))
        also = dict(re.findall(r"`(\w+)` also `(\w+)`", users))  # (`eps` also `rmsprop`)
        for key, value in zip(keys, values, strict=True):
            seen.add(key)
            readers_doc = named | ({also[key]} if key in also else set())
            if _doc_value(value.replace("(off)", "")) != float(fields[key].default):
                wrong.append(f"{key}: default {value!r}, code {fields[key].default!r}")
            readers = (set(registry.OPTIMIZERS) if key in registry.OPTIMIZER_COMMON else
                       {o for o, ks in registry.OPTIMIZERS.items() if key in ks})
            if users.strip() != "all" and readers_doc != readers:
                wrong.append(f"{key}: read by {sorted(readers_doc)}, code {sorted(readers)}")
            if users.strip() == "all" and key not in registry.OPTIMIZER_COMMON:
                wrong.append(f"{key}: 'all', code {sorted(readers)}")
    hparams = set(registry.OPTIMIZER_COMMON) | set(registry.OPTIMIZER_SPECIFIC)
    assert hparams <= seen, hparams - seen
    assert not wrong, wrong


def test_the_guide_lists_every_allowed_value_of_a_named_key():
    """The guide's config table names exactly the values each key with a fixed set of names
    accepts (the Literal fields of the schema and the dataset names of the registry): a new
    activation, optimizer, schedule, ... must appear there, and a removed one must go."""
    import typing

    from trainscape.spec import registry, schema

    text = (ROOT / "docs" / "guide.md").read_text()
    table = text[text.index("| section | key | default | meaning |"):].split("\n\n")[0]
    rows = {}
    section = ""
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        section = cells[0].strip("`[]") or section
        for key in re.findall(r"`(\w+)`", cells[1]):
            rows[(section, key)] = set(re.findall(r"`(\w+)`", cells[2] + cells[3]))
    keys = {(sec, k) for sec, cls in schema._SECTIONS.items() for k in cls.model_fields}
    allowed = {("data", "name"): set(registry.DATASETS)}
    for sec, cls in schema._SECTIONS.items():
        for k, field in cls.model_fields.items():
            if typing.get_origin(field.annotation) is typing.Literal:
                allowed[(sec, k)] = set(typing.get_args(field.annotation))
    assert len(allowed) >= 10  # activation, init, parameterization, loss, optimizer, ...
    wrong = []
    for (sec, key), names in allowed.items():
        doc = rows[(sec, key)]
        # other backticked words in the row are config keys (`learning_rate` is the peak)
        extra = doc - names - {k for _, k in keys}
        if not names <= doc or extra:
            wrong.append(f"{sec}.{key}: guide {sorted(doc)}, code {sorted(names)}")
    assert not wrong, wrong


_UNITS = {"%": 0.01, "GFLOP": 1e9, "MFLOP": 1e6}


def test_every_named_constant_the_docs_quote_has_that_value():
    """`NAME` = value (`train.classify.BLOWUP_FACTOR` = 1000 x, `STALL_TOL` = 5%, ...) and the
    guide's table of thresholds against the constants themselves; a bare name is one of
    train.classify's."""
    import trainscape.train.classify as classify

    quoted = []  # (where, name, value as written, unit)
    for doc in DOCS:
        if doc.name == "CHANGELOG.md" or "bench" in doc.parts:  # logs name the modules of then
            continue
        for m in re.finditer(r"`((?:[a-z_]+\.)*[A-Z][A-Z_0-9]+)` = ([0-9][0-9.,]*)\s*(%|GFLOP|"
                             r"MFLOP)?", doc.read_text()):
            quoted.append((doc.name, *m.groups()))
    guide = (ROOT / "docs" / "guide.md").read_text()
    table = guide[guide.index("| constant | value | reason |"):].split("\n\n")[0]
    quoted += [("guide.md", n, v, None) for n, v in re.findall(r"^\| `(\w+)` \| ([\d.]+) \|",
                                                                  table, re.M)]
    assert len(quoted) >= 15
    wrong = []
    for where, name, value, unit in quoted:
        const = _resolve(f"trainscape.{name}") if "." in name else getattr(classify, name)
        if not math.isclose(float(value.rstrip(".,").replace(",", "")) * _UNITS.get(unit, 1),
                            const):
            wrong.append(f"{where}: {name} = {value}{unit or ''}, code {const}")
    assert not wrong, wrong


def test_the_guide_explains_every_column_of_the_tables():
    """Every column of `runs` (with the sharpness and held-out data, so every optional one)
    is a row of the guide's `runs` table, and every column of `curves` is named in its
    paragraph."""
    import trainscape as ts

    res = ts.run({"data": {"name": "moons", "n_samples": 16, "holdout": 0.25},
                  "model": {"hidden": [2]}, "train": {"steps": 2},
                  "metrics": {"sharpness": True, "sharpness_every": 1, "sharpness_iters": 2},
                  "sweep": {"seed": [0]}}, out=None, progress=False)
    text = (ROOT / "docs" / "guide.md").read_text()
    table = text[text.index("| column | meaning |"):].split("\n\n")[0]
    explained = {n for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
                 for n in re.findall(r"`(\w+)`", cell)}
    assert set(res.runs.columns) - {"seed"} <= explained, set(res.runs.columns) - explained
    curves = text[text.index("`curves` — long:"):].split("\n\n")[0]
    named = set(re.findall(r"`(\w+)`", curves))
    assert set(res.curves.columns) <= named, set(res.curves.columns) - named


def test_the_guide_names_every_sweep_axis():
    """`### Sweep axes` against spec.schema.SWEEP_AXES, and its list of axes that compile a
    program per value against STATIC_AXES."""
    from trainscape.spec import schema

    text = (ROOT / "docs" / "guide.md").read_text()
    para = " ".join(text[text.index("### Sweep axes"):].split("\n\n")[1].split())
    assert set(schema.SWEEP_AXES) | {"learning_rate.K"} <= set(re.findall(r"`([\w.]+)`", para))
    static = re.search(r"Every axis but (.*?) is a traced array", para).group(1)
    assert set(re.findall(r"`(\w+)`", static)) == set(schema.STATIC_AXES), static
