"""The figures of `ack_latency.py`: what each level measured (`Level` for the acks,
`ReplyLevel` for the replies a person feels), and the tables it prints from them, with the
p99 ratios of one target to another."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TARGET_REPLY_P99_MS = 100.0  # issue 8: at 10 people


@dataclass
class Level:
    target: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    work_cpu_s: float = 0.0
    # Slash command sent -> its reply received at response_url (amlbot only).
    replies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0

    def absorb(self, other: Level) -> None:
        """Pool another round of the same target and concurrency into this one."""
        self.latencies_ms += other.latencies_ms
        self.replies_ms += other.replies_ms
        self.unanswered += other.unanswered
        for name, times in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + times
        self.wall_s += other.wall_s
        self.server_cpu_s += other.server_cpu_s
        self.work_cpu_s += other.work_cpu_s

    def percentile(self, p: float, of: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if of is None else of)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def over(self, seconds: float) -> int:
        return sum(1 for ms in self.latencies_ms if ms > seconds * 1000)


@dataclass
class ReplyLevel:
    """Replies as people feel them: each of `concurrency` people sends a command and the
    next one only once the last was answered (as a person does)."""

    text: str
    concurrency: int
    replies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0

    def absorb(self, other: ReplyLevel) -> None:
        self.replies_ms += other.replies_ms
        self.unanswered += other.unanswered


def print_levels(levels: list[Level]) -> None:
    print(
        f"{'target':<10} {'conc':>4} {'acks':>5} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'>1s':>4} {'>3s':>4} {'acks/s':>7} "
        f"{'cpu us/ack':>10} {'work us/ack':>11}"
    )
    for level in levels:
        count = len(level.latencies_ms)
        print(
            f"{level.target:<10} {level.concurrency:>4} {count:>5} "
            f"{sum(level.errors.values()):>6} {level.percentile(50):>8.1f} "
            f"{level.percentile(95):>8.1f} {level.percentile(99):>8.1f} "
            f"{max(level.latencies_ms, default=math.nan):>8.1f} {level.over(1):>4} "
            f"{level.over(3):>4} {count / level.wall_s if level.wall_s else 0:>7.0f} "
            f"{per_ack_us(level.server_cpu_s, count):>10} {per_ack_us(level.work_cpu_s, count):>11}"
        )
        for name, times in sorted(level.errors.items()):
            print(f"{'':<14}error {name}: {times}")
    replied = [level for level in levels if level.replies_ms or level.unanswered]
    if replied:
        print(
            "\nreplies behind the ack levels above (sent back to back at full speed, so "
            "the replies queue behind the acks: a backlog, not what a person feels):"
        )
        for level in replied:
            print(
                f"  {level.target:<10} conc {level.concurrency:>3}: "
                f"p50 {level.percentile(50, level.replies_ms):7.1f} ms  "
                f"p99 {level.percentile(99, level.replies_ms):7.1f} ms  "
                f"unanswered {level.unanswered}"
            )


def print_replies(levels: list[ReplyLevel]) -> None:
    print(
        "\nreply latency a person feels (command sent -> reply at its response_url; each "
        "person sends the next command once the last was answered; "
        f"target p99 <= {TARGET_REPLY_P99_MS:.0f} ms at 10):"
    )
    for level in levels:
        ordered = sorted(level.replies_ms)

        def nearest(p: float, ordered: list[float] = ordered) -> float:
            if not ordered:
                return math.nan
            return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

        print(
            f"  {level.text!r:<16} conc {level.concurrency:>3}: replies {len(ordered):>5}  "
            f"p50 {nearest(50):7.1f} ms  p99 {nearest(99):7.1f} ms  "
            f"max {max(ordered, default=math.nan):7.1f} ms  unanswered {level.unanswered}"
        )


def per_ack_us(seconds: float, acks: int) -> str:
    return f"{seconds / acks * 1e6:.0f}" if acks and seconds else "-"


def print_ratios(baseline: list[Level], candidate: list[Level], target: float | None) -> None:
    """The p99 and p50 ratios of `candidate` to `baseline` per concurrency; against
    `target` (of the p99 ratio) when there is one."""
    wanted = f" (target <= {target}x)" if target is not None else ""
    print(f"\np99 ratio {candidate[0].target}/{baseline[0].target}{wanted}:")
    for base, other in zip(baseline, candidate, strict=True):
        ratio = other.percentile(99) / base.percentile(99)
        median = other.percentile(50) / base.percentile(50)
        verdict = ""
        if target is not None:
            verdict = "  within target" if ratio <= target else "  OVER target"
        print(f"  concurrency {base.concurrency:>3}: {ratio:5.2f}x (p50 {median:4.2f}x){verdict}")
