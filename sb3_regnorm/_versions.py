"""Python and package versions, recorded with every study summary and benchmark run so results can be traced."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """``{"python": ..., name: version}``; a package that is not installed is recorded as such, not skipped."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
