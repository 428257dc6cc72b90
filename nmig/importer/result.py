"""What one `nmig import` invocation did (the import report, in contrast, covers every invocation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nmig.errors import PartialFailure
from nmig.importer.plan import RunPlan
from nmig.importer.report import Event
from nmig.importer.state import StateFile


@dataclass
class ImportResult:
    """What one invocation did (the report, in contrast, covers every invocation)."""

    project: str
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    trashed: list[str] = field(default_factory=list)  # runs trashed in 2.x after their export (see the report)
    events: list[Event] = field(default_factory=list)
    report_path: StateFile | None = None  # beside the state file: on disk or on the bundle's store
    plans: list[RunPlan] = field(default_factory=list)

    def summary(self) -> str:
        """The one line `nmig import` ends with."""
        return (
            f"{len(self.imported)} run(s) imported into {self.project}; {len(self.already)} already imported; "
            f"{len(self.failed)} failed; {len(self.refused)} refused; {len(self.not_imported)} model entities not imported"
            f"{self._trashed_note()}. Report: {self.report_path}"
        )

    def _trashed_note(self) -> str:
        if not self.trashed:
            return ""
        trashed_in_target = {e.run for e in self.events if e.case == "trashed_in_target"}
        moved = [s for s in self.trashed if s in trashed_in_target]
        kept = [s for s in self.trashed if s not in trashed_in_target]
        parts = []
        if kept:
            parts.append(f"{len(kept)} left in 3.x ({', '.join(kept[:5])}; --sync-trash trashes them there)")
        if moved:
            parts.append(f"{len(moved)} moved to 3.x's trash")
        return f"; {len(self.trashed)} trashed in 2.x since exported: " + ", ".join(parts)

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
