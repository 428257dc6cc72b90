"""What one `nmig import` invocation did (the import report, in contrast, covers every invocation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmig.errors import PartialFailure
from nmig.importer.plan import RunPlan
from nmig.importer.report import Event


@dataclass
class ImportResult:
    """What one invocation did (the report, in contrast, covers every invocation)."""

    project: str
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    report_path: Path | None = None
    plans: list[RunPlan] = field(default_factory=list)

    def summary(self) -> str:
        """The one line `nmig import` ends with."""
        return (
            f"{len(self.imported)} run(s) imported into {self.project}; {len(self.already)} already imported; "
            f"{len(self.failed)} failed; {len(self.refused)} refused; {len(self.not_imported)} model entities not imported. "
            f"Report: {self.report_path}"
        )

    def raise_for_failures(self) -> None:
        """PartialFailure (exit 1) when some runs were not imported; the report says which and why."""
        if self.failed or self.refused:
            missing = self.failed + self.refused
            raise PartialFailure(
                f"{len(missing)} run(s) not imported ({', '.join(missing[:10])}); "
                f"see {self.report_path}; re-run the same command to retry"
            )

    def report_runs(self) -> dict[str, list[str]]:
        """The runs by report status (report.RUN_STATUSES)."""
        return {
            "imported": self.imported,
            "already_imported": self.already,
            "failed": self.failed,
            "refused": self.refused,
            "not_imported": self.not_imported,
        }
