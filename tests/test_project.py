"""Project habits that no type checker or linter sees: the changelog, the version, the code and the documentation agree.

Everything but the documented-imports check reads files only, without importing the package.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sb3_regnorm"
CHANGELOG = ROOT / "CHANGELOG.md"
API_DOCS = ROOT / "docs" / "api"

_HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$", re.MULTILINE)
_DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def _literal(path: Path, name: str) -> object:
    """The value of a module-level ``name = <literal>`` in ``path``, without importing it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(value)
    raise AssertionError(f"{path} has no literal {name}")


def _sections() -> list[tuple[str, str | None, str]]:
    """(name, date, body) of every ``## [name] - date`` section of the changelog, in file order."""
    text = CHANGELOG.read_text(encoding="utf-8")
    heads = list(_HEADING.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return [(h["name"], h["date"], text[h.end() : end]) for h, end in zip(heads, ends, strict=True)]


def _has_entries(body: str) -> bool:
    return any(line.startswith("- ") for line in body.splitlines())


def test_changelog_sections_are_ordered_and_dated() -> None:
    sections = _sections()
    assert sections, "CHANGELOG.md has no '## [...]' sections"
    assert sections[0][0] == "Unreleased", "the first section must be '## [Unreleased]', where every change adds a line"
    releases = sections[1:]
    assert releases, "CHANGELOG.md records no released version"
    for name, date, body in releases:
        assert date is not None, f"release {name} has no date: '## [{name}] - YYYY-MM-DD'"
        assert not Version(name).is_prerelease, f"{name} is not a release version"
        assert _has_entries(body), f"release {name} lists no changes"
    versions = [Version(name) for name, _, _ in releases]
    dates = [date or "" for _, date, _ in releases]
    assert versions == sorted(versions, reverse=True), f"releases must be newest first: {versions}"
    assert dates == sorted(dates, reverse=True), f"release dates must be newest first: {dates}"


def test_version_follows_the_changelog() -> None:
    version = Version(str(_literal(PACKAGE / "version.py", "__version__")))
    (_, _, unreleased), *releases = _sections()
    latest = Version(releases[0][0])
    if _has_entries(unreleased):
        # Unreleased work on main: the next version as a pre-release, so results from main are not labelled `latest`.
        assert version.is_devrelease or version.is_prerelease, f"{version}: Unreleased has changes, use a .devN version"
        assert version > latest, f"{version} must be newer than the latest release {latest}"
        assert f"`{version}`" in unreleased or version.base_version in unreleased, (
            f"the Unreleased section should say why version.py is {version}"
        )
    else:
        assert version == latest, f"version.py says {version}, the latest changelog release is {latest}"


def _public_modules() -> list[str]:
    """Dotted names of the package's public modules and packages (no ``_private`` part), from the file tree."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part.startswith("_") and part != "__main__" for part in parts) or parts[-1] == "version":
            continue  # private, or version.py (its one name, __version__, is the changelog's business)
        names.append(".".join(parts))
    return names


def _documented() -> set[str]:
    return {m for page in API_DOCS.glob("*.md") for m in _DIRECTIVE.findall(page.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_is_in_the_api_reference(module: str) -> None:
    assert module in _documented(), f"add '::: {module}' to a page under docs/api/ (and the page to mkdocs.yml's nav)"


def test_every_exported_name_is_in_the_api_index() -> None:
    exported = _literal(PACKAGE / "__init__.py", "__all__")
    assert isinstance(exported, list)
    index = (API_DOCS / "index.md").read_text(encoding="utf-8")
    missing = [name for name in exported if name != "__version__" and f"`{name}`" not in index]
    assert not missing, f"docs/api/index.md does not list {missing}"


def test_pre_commit_runs_the_checks_ci_runs() -> None:
    config = (ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    checks = (
        ("ruff check", "id: ruff-check"),
        ("ruff format --check", "id: ruff-format"),
        ("mypy", "id: mypy"),
        ("mkdocs build --strict", "id: mkdocs"),
    )
    for ci, hook in checks:
        assert ci in makefile, f"make test no longer runs {ci!r}: update .pre-commit-config.yaml and this test"
        assert hook in config, f"CI runs {ci!r} but .pre-commit-config.yaml has no {hook!r}"


_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", _doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_python_parses_and_its_imports_exist(page: Path) -> None:
    """Every ```python block of the README and the docs is valid Python, and what it imports from sb3_regnorm exists."""
    for block in _PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")):
        tree = ast.parse(block)  # a SyntaxError names the page through the test id
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sb3_regnorm"):
                module = importlib.import_module(str(node.module))
                missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
                assert not missing, f"{page.name}: `from {node.module} import {', '.join(missing)}` no longer works"
