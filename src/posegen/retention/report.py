"""What one prune deleted (or, with ``--dry-run``, would delete): counts and bytes per kind."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tally:
    """Rows (or files) and the bytes they held."""

    count: int = 0
    bytes: int = 0

    def add(self, count: int, nbytes: int = 0) -> None:
        self.count += count
        self.bytes += nbytes


@dataclass
class PruneReport:
    """One prune's outcome. ``dry_run``: nothing was deleted, these are what would be."""

    dry_run: bool = False
    #: Event and log-line rows of generations that ended long enough ago.
    events: Tally = field(default_factory=Tally)
    #: Generations deleted with their results (bytes: images and thumbnails).
    generations: Tally = field(default_factory=Tally)
    #: Uploads no project or pose refers to, past their retention.
    uploads: Tally = field(default_factory=Tally)
    #: Stored files no row names, older than the grace period, per namespace (results, uploads).
    orphans: dict[str, Tally] = field(default_factory=dict)
    #: Bytes that could not be deleted from the store (left as orphans for the next sweep).
    errors: list[str] = field(default_factory=list)

    def orphan(self, namespace: str) -> Tally:
        return self.orphans.setdefault(namespace, Tally())

    def lines(self) -> list[str]:
        """A person's summary, one line per kind."""
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"events: {verb} {self.events.count} rows",
            f"generations: {verb} {self.generations.count} "
            f"({self.generations.bytes} bytes of results)",
            f"uploads: {verb} {self.uploads.count} ({self.uploads.bytes} bytes)",
        ]
        for name, tally in sorted(self.orphans.items()):
            out.append(f"orphan {name} files: {verb} {tally.count} ({tally.bytes} bytes)")
        out.extend(f"error: {e}" for e in self.errors)
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "dryRun": self.dry_run,
            "events": {"count": self.events.count},
            "generations": {"count": self.generations.count, "bytes": self.generations.bytes},
            "uploads": {"count": self.uploads.count, "bytes": self.uploads.bytes},
            "orphans": {k: {"count": v.count, "bytes": v.bytes} for k, v in self.orphans.items()},
            "errors": list(self.errors),
        }
