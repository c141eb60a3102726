"""Multi-seed benchmark campaigns: campaign files (data) -> runner (processes or Ray tasks) -> ``runs.jsonl`` -> report.

Entry point: ``sb3-regnorm bench run|report|status|list CAMPAIGN`` (see :mod:`sb3_regnorm.benchmark.cli`). Modules are
imported lazily by the CLI so ``bench report`` works without training dependencies.
"""

__all__: list[str] = []
