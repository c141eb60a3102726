"""The code revision recorded with benchmark runs: a commit, ``+dirty`` for local edits, ``unknown`` outside git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sb3_regnorm._versions import UNKNOWN_SOURCE, source_revision

pytestmark = pytest.mark.skipif(
    subprocess.run(["git", "--version"], capture_output=True).returncode != 0, reason="git is not installed"
)


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    return subprocess.run(["git", *identity, "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git repository with one committed package folder, ``pkg/``."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("X = 1\n")
    _git(tmp_path, "add", "pkg")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_clean_package_records_its_commit(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD").strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    (checkout / "notes.txt").write_text("untracked files elsewhere do not change the code\n")
    assert source_revision(checkout / "pkg") == head


def test_an_edited_package_is_marked_dirty(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD").strip()
    (checkout / "pkg" / "__init__.py").write_text("X = 2\n")
    assert source_revision(checkout / "pkg") == head + "+dirty"


def test_a_package_that_git_does_not_track_is_unknown(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # e.g. a wheel installed into a virtual environment that lives inside some other repository
    site = checkout / ".venv" / "site-packages" / "pkg"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("X = 1\n")
    assert source_revision(site) == UNKNOWN_SOURCE
    outside = tmp_path_factory.mktemp("no_git")
    (outside / "__init__.py").write_text("X = 1\n")
    assert source_revision(outside) == UNKNOWN_SOURCE
