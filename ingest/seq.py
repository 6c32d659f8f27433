"""Per-device ``seq`` tracking: a jump forward means messages the device sent never arrived."""

from __future__ import annotations

from sqlalchemy import Connection, text

from ingest.decode import DecodedBatch

# A seq this far *below* the last one is a device restart (counter back to 0), not a late message.
RESTART_BELOW = 1_000


class SeqTracker:
    """Remembers each device's highest seq. One ingest process per device (see DESIGN §6 scale-out)."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}

    def load(self, conn: Connection) -> None:
        rows = conn.execute(text("SELECT device_id, last_seq FROM device_state WHERE last_seq IS NOT NULL"))
        self.last = {int(d): int(s) for d, s in rows}

    def scan(self, batch: DecodedBatch) -> tuple[list[tuple[int, int, int]], dict[int, int]]:
        """Gaps (device, first missing, last missing) and the new last seq per device; nothing is
        remembered until ``commit`` (the batch transaction may still roll back)."""
        gaps: list[tuple[int, int, int]] = []
        updates: dict[int, int] = {}
        for device, (_, seqs) in batch.seen.items():
            if not seqs:
                continue
            prev = self.last.get(device)
            # Split at restarts in receipt order (a backlog batch after an outage may span one), then
            # sort inside each part: reordering within a batch is not a gap.
            segments: list[list[int]] = [[]]
            high = prev
            for s in seqs:
                if high is not None and s + RESTART_BELOW < high:
                    segments.append([])
                    high = s
                segments[-1].append(s)
                high = s if high is None else max(high, s)
            for segment in segments:
                for s in sorted(set(segment)):
                    if prev is None or s + RESTART_BELOW < prev:
                        prev = s
                    elif s > prev + 1:
                        gaps.append((device, prev + 1, s - 1))
                        prev = s
                    elif s == prev + 1:
                        prev = s
            updates[device] = prev if prev is not None else max(seqs)
        return gaps, updates

    def commit(self, updates: dict[int, int]) -> None:
        self.last.update(updates)
