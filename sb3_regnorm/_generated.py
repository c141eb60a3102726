"""Generated markdown tables kept inside hand-written pages.

Why: the README's zoo table and the benchmark status table are generated from committed records
(``confirmations.json``, ``runs.jsonl``), and a test keeps the README's current. A page marks the spot with an HTML
comment line (``<!-- zoo-table: ... -->``); the generated block is everything from the line after it up to the first
blank line, so ``--write`` replaces it and leaves the prose around it alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sb3_regnorm._locking import atomic_write_text

__all__ = ["GeneratedBlockError", "print_or_write", "replace_generated_block"]


class GeneratedBlockError(ValueError):
    """The page has no marker for the block, or more than one."""


def replace_generated_block(path: str | Path, marker: str, block: str) -> bool:
    """Put ``block`` after the line of ``path`` that starts with ``<!-- {marker}:``, in place of the lines up to the
    first blank line; return whether the file changed. The page keeps its line endings (LF or CRLF)."""
    if not block.strip() or any(not line.strip() for line in block.strip("\n").split("\n")):
        raise GeneratedBlockError("a generated block must be non-empty lines: a blank line would end it early")
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as handle:  # no newline translation: CRLF pages stay CRLF
        text = handle.read()
    lines = text.splitlines(keepends=True)
    tag = f"<!-- {marker}:"
    starts = [i for i, line in enumerate(lines) if line.startswith(tag)]
    if len(starts) != 1:
        found = "no line" if not starts else f"{len(starts)} lines"
        raise GeneratedBlockError(f"{path}: {found} starting with {tag!r}; expected exactly one to mark the table")
    eol = "\r\n" if lines[starts[0]].endswith("\r\n") or (text.count("\r\n") > text.count("\n") / 2) else "\n"
    first = starts[0] + 1
    if not lines[starts[0]].endswith(("\n", "\r")):
        lines[starts[0]] += eol  # the marker was the last line, without a newline
    last = first
    while last < len(lines) and lines[last].strip():
        last += 1
    body = "".join(line + eol for line in block.strip("\n").split("\n"))
    new_text = "".join([*lines[:first], body, *lines[last:]])
    if new_text == text:
        return False
    atomic_write_text(path, new_text, newline="")
    return True


def print_or_write(table: str, page: str | None, marker: str, prefix: str) -> int:
    """A command's ``--write PAGE``: print ``table`` when ``page`` is None, else put it into the page; the exit status
    (2, with the reason on stderr, when the page cannot be read or has no single marker line)."""
    if page is None:
        print(table, end="")
        return 0
    try:
        changed = replace_generated_block(page, marker, table)
    except (OSError, UnicodeError, GeneratedBlockError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[{prefix}] {page}: {marker} {'updated' if changed else 'already current'}")
    return 0
