"""Python and package versions, recorded with every study summary and benchmark run so results can be traced."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

UNKNOWN_SOURCE = "unknown"


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """``{"python": ..., name: version}``; a package that is not installed is recorded as such, not skipped."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(package_dir: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def source_revision(package_dir: Path | None = None) -> str:
    """The git commit the package's code comes from, ``+dirty`` when its tracked files differ from that commit.

    A development version (``0.2.0.dev0``) names no code: two runs recorded months apart carry the same one. Returns
    ``"unknown"`` when the package is not a tracked folder of a git checkout (a wheel in site-packages, even one that
    sits inside some other repository, or no git on the machine).
    """
    folder = package_dir if package_dir is not None else Path(__file__).resolve().parent
    try:
        _git(folder, "ls-files", "--error-unmatch", "__init__.py")  # this very folder is tracked by the checkout
        commit = _git(folder, "rev-parse", "HEAD")
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_SOURCE
    return commit + ("+dirty" if changed else "")
