"""The figures of `ack_latency.py`: what each level measured (`Level` for the acks,
`ReplyLevel` for the replies a person feels), and the tables it prints from them, with the
p99 ratios of one target to another."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

TARGET_REPLY_P99_MS = 100.0  # issue 8: at 10 people


@dataclass
class Level:
    target: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    # CPU seconds spent during the level, by who spent them (`proc_stats.CPU_USERS`).
    cpu_s: dict[str, float] = field(default_factory=dict)
    # The workers' CPU seconds until the level's replies were in: the work behind its acks.
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
        self.work_cpu_s += other.work_cpu_s
        for user, seconds in other.cpu_s.items():
            self.cpu_s[user] = self.cpu_s.get(user, 0.0) + seconds

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
            f"{per_ack_us(level.cpu_s.get('edge', 0.0), count):>10} "
            f"{per_ack_us(level.work_cpu_s, count):>11}"
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


def print_cpu_split(levels: list[Level]) -> None:
    """Where the machine's CPUs went during each level, in cores busy on average: the
    server, and everything else that shares its CPUs in this bench (on a real deployment
    the load and the catcher are Slack's, and the database usually has a host of its own)."""
    cpus = os.cpu_count() or 1
    print(
        f"\nwhere the CPUs went during each level (cores busy on average, of {cpus}; "
        "`load` is this process sending the commands, `catcher` the stand-in for Slack "
        "receiving the replies):"
    )
    print(
        f"{'target':<10} {'conc':>4} {'edge':>6} {'workers':>7} {'load':>6} {'catcher':>7} "
        f"{'postgres':>8} {'other':>6} {'idle':>6}"
    )
    for level in levels:
        if not level.wall_s or not level.cpu_s:
            continue
        named = ("edge", "workers", "load", "catcher", "postgres")
        cores = {user: level.cpu_s.get(user, 0.0) / level.wall_s for user in named}
        busy = level.cpu_s.get("machine", 0.0) / level.wall_s
        # The machine's figure counts in 10 ms ticks: a short level may read a little low.
        other = max(0.0, busy - sum(cores.values()))
        idle = max(0.0, cpus - max(busy, sum(cores.values())))
        print(
            f"{level.target:<10} {level.concurrency:>4} {cores['edge']:>6.2f} "
            f"{cores['workers']:>7.2f} {cores['load']:>6.2f} {cores['catcher']:>7.2f} "
            f"{cores['postgres']:>8.2f} {other:>6.2f} {idle:>6.2f}"
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
