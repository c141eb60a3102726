"""Griffe extension: turn the Sphinx roles in sb3_regnorm's docstrings into mkdocstrings cross-references.

Why: the docstrings use ``:class:`~sb3_regnorm.layers.RegularityNorm```-style roles (they read well in ``help()``),
which Markdown would print literally. A role whose target is a public sb3_regnorm object becomes an autorefs link,
so a reference to a renamed or removed object fails ``mkdocs build --strict``; a relative name is looked up from the
documented object outwards; anything else (private helpers, other libraries) becomes plain code. A line-final
``::`` (reST's literal-block marker) becomes ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const|type):`(~?)([\w.]+)(?:\(\))?`")


def _exists(loader: griffe.GriffeLoader, path: str) -> bool:
    try:
        loader.modules_collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _resolve(obj: griffe.Object, loader: griffe.GriffeLoader, name: str) -> str | None:
    """Full path of ``name`` as seen from ``obj`` (itself, then its parents), or None when it is not ours."""
    if name.startswith("sb3_regnorm"):
        return name
    scope: griffe.Object | None = obj if (obj.is_class or obj.is_module) else obj.parent
    while scope is not None:
        candidate = f"{scope.path}.{name}"
        if _exists(loader, candidate):
            return candidate
        scope = scope.parent
    return None


_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


class RstRoles(griffe.Extension):
    """Rewrite roles once the object tree is complete, so relative names can be looked up."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self.on_object(obj=pkg, loader=loader)  # the root package gets no on_object event of its own

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is None or ":" not in obj.docstring.value:
            return

        def replace(match: re.Match[str]) -> str:
            short, name = match.group(1) == "~", match.group(2)
            title = name.rsplit(".", 1)[-1] if short else name
            path = _resolve(obj, loader, name)
            if path is None or any(part.startswith("_") and not part.startswith("__") for part in path.split(".")):
                return f"`{title}`"
            return f"[`{title}`][{path}]"

        # "Usage::" introduces a reST literal block; in Markdown the indented block is code already.
        obj.docstring.value = _LITERAL_MARKER.sub(":", _ROLE.sub(replace, obj.docstring.value))
