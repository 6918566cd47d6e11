"""What a scoring run did, counted from its parts' reports, and the lines the job ends with."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.score.step import PartReport

__all__ = ["Summary"]


@dataclass
class Summary:
    """What a run did; `exit_code` is 0 unless parts were lost to repeated actor deaths or must be rescored."""

    store: str
    planned_parts: int = 0
    parts_run: int = 0
    examples: int = 0
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    truncated: int = 0
    tokens: int = 0
    failures: dict[int, str] = field(default_factory=dict)
    lost_parts: dict[int, str] = field(default_factory=dict)
    # part -> methods it held before but no longer does: its examples changed (an example that failed
    # before now scored, or the reverse, or another greedy target), so it was rewritten without them
    dropped: dict[int, list[str]] = field(default_factory=dict)
    actor_deaths: int = 0
    devices: set[str] = field(default_factory=set)  # where the replicas scored
    oom_halvings: int = 0
    bytes_written: int = 0  # the parts this run wrote
    store_bytes: int = 0  # the whole store, when the run ended
    startup_seconds: float = 0.0
    scoring_seconds: float = 0.0
    plan_lines: list[str] = field(default_factory=list)
    form_line: str = ""  # how the maps are stored, when not dense (e.g. what `--store auto` chose)

    @property
    def exit_code(self) -> int:
        return 1 if self.lost_parts or self.dropped else 0

    def add(self, r: PartReport) -> None:
        """Count one written part's report."""
        self.examples += r.examples
        self.scored += r.scored
        self.failed += r.failed
        self.skipped += r.skipped
        self.truncated += r.truncated
        self.tokens += r.tokens
        self.failures.update(r.failures)
        self.devices.add(r.device)
        self.oom_halvings += r.oom_halvings
        self.bytes_written += r.bytes

    def lines(self) -> list[str]:
        out = [
            f"store        {self.store}",
            f"parts        {self.parts_run} run of {self.planned_parts} planned",
            f"examples     {self.examples} run: {self.scored} scored, {self.skipped} skipped (nothing to score), "
            f"{self.failed} failed, {self.truncated} truncated",
            f"tokens       {self.tokens}",
            f"throughput   {self._throughput()}",
            f"store bytes  {self.bytes_written / 2**20:.2f} MiB written by this run "
            f"({self.store_bytes / 2**20:.2f} MiB in the store)",
        ]
        if self.form_line:
            out.append(f"maps stored  {self.form_line}")
        if self.devices:
            out.append(f"devices      {', '.join(sorted(self.devices))}")
        if self.oom_halvings:
            out.append(f"memory       out-of-memory errors halved the pair budget {self.oom_halvings} time(s)")
        if self.actor_deaths:
            out.append(f"actor deaths {self.actor_deaths} (their parts were redone)")
        out += self._failure_lines()
        for p, reason in sorted(self.lost_parts.items()):
            out.append(f"LOST PART    {p}: {reason}")
        for p, methods in sorted(self.dropped.items()):
            out.append(
                f"TO RESCORE   part {p}: its examples changed since {', '.join(methods)} was scored (statuses, "
                f"lengths or targets), so it now holds this run's methods only; rerun the same command to score them"
            )
        return out

    def _throughput(self) -> str:
        # A rerun on a finished store starts no worker: no time was measured, so there is no rate.
        if not self.parts_run:
            return "none: every planned part was already done (nothing to score)"
        if self.scoring_seconds <= 0:
            return "not measured: no worker became ready"
        seconds = self.scoring_seconds
        return (
            f"{self.examples / seconds:.2f} examples/s, {self.tokens / seconds:.1f} tokens/s "
            f"from the first ready worker to the end, {seconds:.1f} s "
            f"(+{self.startup_seconds:.1f} s start-up before it)"
        )

    def _failure_lines(self, reasons: int = 5, ids: int = 3) -> list[str]:
        """A line per failure reason (the most frequent `reasons`), with a count and the first few ids."""
        by_reason: dict[str, list[int]] = {}
        for i, reason in sorted(self.failures.items()):
            by_reason.setdefault(reason, []).append(i)
        ranked = sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
        out = []
        for reason, which in ranked[:reasons]:
            shown = ", ".join(map(str, which[:ids])) + (", ..." if len(which) > ids else "")
            out.append(f"failed       {len(which)} × {reason} (example{'s' if len(which) > 1 else ''} {shown})")
        if len(ranked) > reasons:
            rest = sum(len(w) for _, w in ranked[reasons:])
            out.append(f"failed       {rest} more, for {len(ranked) - reasons} other reasons (tables/examples/)")
        return out
