"""The README and docs/ stay true: every recipe is in the README's table, every relative link resolves, every
``nasden`` command shown parses and the recipes it names are valid, and the option reference is what the code
generates."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nasden.cli import build_parser
from nasden.pipeline.recipe import load_recipe
from nasden.reference import options_reference

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_is_short_and_undated() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert not re.search(r"\b(I|my|me|we|today)\b", text), "first person or dated text belongs in docs/results.md"
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b|\b1[12]-\d\d\b", text)


def test_every_recipe_is_in_the_readme_table() -> None:
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `recipes/")]
    listed = {re.match(r"\| `(recipes/[^`]+)`", line).group(1) for line in table}
    assert listed == {f"recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yaml")}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.relative_to(ROOT)}: link to {target} finds nothing"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.relative_to(ROOT)}: no heading #{anchor} in {path or 'it'}"


def _commands(page: Path) -> list[str]:
    lines = []
    for block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            if not re.match(r"\s*(\w+=\S+\s+)*nasden\s", line):
                continue  # another program's line (python -c spans lines)
            words = shlex.split(line.split(" #")[0])
            while words and re.match(r"\w+=", words[0]):  # NASDEN_DATA=/data nasden ...
                words = words[1:]
            if words[:1] == ["nasden"]:
                lines.append(words[1:])
    return lines


COMMANDS = [(page, argv) for page in PAGES for argv in _commands(page)]


@pytest.mark.parametrize(("page", "argv"), COMMANDS,
                         ids=[f"{p.relative_to(ROOT)}: {' '.join(a)}" for p, a in COMMANDS])
def test_shown_commands_parse_and_name_valid_recipes(page: Path, argv: list[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page.relative_to(ROOT)}: `nasden {' '.join(argv)}` does not parse")
    recipe = getattr(args, "recipe", None)
    if recipe and recipe.startswith("recipes/"):
        load_recipe(ROOT / recipe, getattr(args, "override", []))


def test_the_option_reference_is_what_the_code_writes() -> None:
    committed = (ROOT / "docs" / "guide" / "options.md").read_text()
    assert committed == options_reference(), "regenerate it: nasden ls --options > docs/guide/options.md"


def test_the_results_index_lists_every_result_file() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "index.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    index = (ROOT / "bench" / "results" / "README.md").read_text()
    files = [p for p in (ROOT / "bench" / "results").rglob("*") if p.is_file() and p.name != "README.md"]
    assert all(f"({p.relative_to(ROOT / 'bench' / 'results').as_posix()})" in index for p in files)
