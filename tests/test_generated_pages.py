"""Record files and generated tables: atomic writes keep permissions; `--write` updates a page's marked table only."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sb3_regnorm import confirm
from sb3_regnorm._generated import GeneratedBlockError, replace_generated_block
from sb3_regnorm._locking import atomic_write_text
from sb3_regnorm.benchmark import cli

PAGE = "# Title\n\nIntro.\n\n<!-- zoo-table: generated -->\n| old |\n|---|\n| row |\n\nAfter the table.\n"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_keeps_the_file_permissions(tmp_path: Path) -> None:
    # the temporary file behind an atomic write is 0600; records written through it used to end up private
    shared = tmp_path / "shared.json"
    shared.write_text("[]\n")
    shared.chmod(0o664)
    atomic_write_text(shared, "[1]\n")
    assert shared.read_text() == "[1]\n" and _mode(shared) == 0o664
    umask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.json"
        atomic_write_text(fresh, "{}\n")
    finally:
        os.umask(umask)
    assert _mode(fresh) == 0o640
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_generated_block_is_replaced_up_to_the_first_blank_line(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(PAGE)
    assert replace_generated_block(page, "zoo-table", "| new |\n|---|\n| a |\n| b |\n")
    assert page.read_text() == PAGE.replace("| old |\n|---|\n| row |\n", "| new |\n|---|\n| a |\n| b |\n")
    assert not replace_generated_block(page, "zoo-table", "| new |\n|---|\n| a |\n| b |\n")  # already current
    with pytest.raises(GeneratedBlockError, match="no line starting with '<!-- status-table:'"):
        replace_generated_block(page, "status-table", "| x |\n")
    page.write_text(PAGE + PAGE)
    with pytest.raises(GeneratedBlockError, match="2 lines"):
        replace_generated_block(page, "zoo-table", "| x |\n")
    for bad in ("", "| a |\n\n| b |\n"):  # a blank line would end the block early: the next write would leave a tail
        with pytest.raises(GeneratedBlockError, match="non-empty lines"):
            replace_generated_block(page, "zoo-table", bad)
    assert page.read_text() == PAGE + PAGE  # nothing written on error


def test_a_marker_on_the_last_line_and_crlf_pages(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# T\n\n<!-- zoo-table: x -->")  # no newline after the marker
    for _ in range(2):  # a second write finds the first one's table and replaces it
        replace_generated_block(page, "zoo-table", "| a |\n|---|\n")
        assert page.read_text() == "# T\n\n<!-- zoo-table: x -->\n| a |\n|---|\n"
    crlf = "# T\r\n\r\n<!-- zoo-table: x -->\r\n| old |\r\n\r\nEnd.\r\n"
    page.write_bytes(crlf.encode())
    assert replace_generated_block(page, "zoo-table", "| new |\n|---|\n")
    assert page.read_bytes() == crlf.replace("| old |", "| new |\r\n|---|").encode()


def test_confirm_table_write_updates_the_readme_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / "confirmations.json"
    fresh = confirm._fresh_record(confirm.ConfirmSettings("ppo", "LunarLander-v3", "rn"), 1_000_000)
    record = {**fresh, "seeds": [0, 1, 2], "returns": [1.0, 2.0, 3.0], "stds": [0.0] * 3, "train_s": [1.0] * 3}
    record["mean"] = 2.0
    records.write_text(json.dumps([record]))
    assert "| PPO | LunarLander-v3 | 1M | - | - | 2 T |" in confirm.zoo_table([record])  # the record reaches the table
    page = tmp_path / "README.md"
    page.write_text(PAGE)
    assert confirm.main(["--table", "--out", str(records), "--write", str(page)]) == 0
    assert confirm.zoo_table([record]) in page.read_text() and page.read_text().endswith("\n\nAfter the table.\n")
    assert "README.md: zoo-table updated" in capsys.readouterr().out
    assert confirm.main(["--table", "--out", str(records), "--write", str(tmp_path / "missing.md")]) == 2
    with pytest.raises(SystemExit):
        confirm.main(["--out", str(records), "--write", str(page)])  # --write without --table


def test_bench_status_write_updates_the_status_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "README.md"
    page.write_text("# Benchmarks\n\n<!-- status-table: generated -->\n| stale |\n\nProse.\n")
    root = tmp_path / "results"
    assert cli.main(["status", "paper", "--root", str(root), "--write", str(page)]) == 0
    text = page.read_text()
    assert "| `paper` | 0 of 100 | DQN LunarLander-v3 0/100 |" in text and "stale" not in text
    assert text.endswith("|\n\nProse.\n")
    page.write_text("# no marker\n")
    assert cli.main(["status", "paper", "--root", str(root), "--write", str(page)]) == 2
    assert "status-table" in capsys.readouterr().err


def test_malformed_confirmation_records_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    good = {"algo": "ppo", "env": "LunarLander-v3", "norm": "rn", "n_timesteps": 1, "seeds": [0, 1], "returns": [1, 2]}
    path.write_text(json.dumps([good, {"algo": "ppo"}]))
    with pytest.raises(ValueError, match="record 1 lacks env, norm, n_timesteps, seeds, returns"):
        confirm.load_records(path)
    path.write_text(json.dumps([{**good, "stds": [0.0]}]))  # one std for two seeds: a merge would drop a seed
    with pytest.raises(ValueError, match="lists of different lengths"):
        confirm.load_records(path)
