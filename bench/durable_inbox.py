"""Every figure of issue 8 ("nothing accepted is lost or stranded"), one after another.

    python bench/durable_inbox.py            # all of it: about 45 minutes on 2 cores
    python bench/durable_inbox.py --quick    # fewer rounds and requests: a few minutes

Runs the benchmarks that measure each promise, in this order, and prints what each prints:

1. `kill_loop.py`: SIGKILL mid-approval, mid-revocation, of a worker alone and inside
   commands that policy runs at once, then the rolling deploy (counts of terminal states,
   Azure effects, messages; recovery times).
2. `slack_outage.py`: 30 s of 429 then 30 s of 500 from the fake Slack (backlog delivered
   once each, seconds after recovery).
3. `ack_latency.py` on SQLite and on PostgreSQL: ack p99 against a bare Bolt app at 10 and
   50 concurrent, and the reply latency a person feels for `help` and `compute list`; on
   PostgreSQL also the resident memory of the process tree idle and after 10,000 commands.
4. `ack_latency.py --work-processes 0` on PostgreSQL: the same ratio for the edge alone,
   as the `web` Deployment runs it with the workers on other machines (on one machine, any
   work beside the edge takes CPU from it, even at idle priority: `ack_history.md`).
5. `ack_latency.py --stall 30`: acks while every workspace call stalls 30 s.
6. `ack_arrivals.py` on PostgreSQL: acks at fixed arrival rates (an open loop, as Slack
   delivers commands), against the bare app at the same rates.

Prints figures; asserts nothing. A figure on a busy machine is a figure about that machine:
run it on a quiet one (see bench/README.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steps(quick: bool) -> list[tuple[str, list[str]]]:
    rounds = ["--rounds", "1"] if quick else []
    return [
        (
            "kill loop and rolling deploy (PostgreSQL)",
            [
                "kill_loop.py",
                *(["--rounds", "6", "--at-once", "3", "--commands", "60"] if quick else []),
            ],
        ),
        ("Slack outage", ["slack_outage.py", *(["--messages", "30"] if quick else [])]),
        ("ack and reply latency, SQLite", ["ack_latency.py", "--target", "amlbot", *rounds]),
        (
            "ack and reply latency, PostgreSQL, and memory",
            [
                "ack_latency.py",
                "--target",
                "amlbot",
                "--database",
                "postgres",
                "--memory-commands",
                "1000" if quick else "10000",
                *rounds,
            ],
        ),
        (
            "ack latency of the edge alone (`web`, workers elsewhere), PostgreSQL",
            [
                "ack_latency.py",
                "--target",
                "amlbot",
                "--database",
                "postgres",
                "--work-processes",
                "0",
                "--no-reference",
                "--reply-text",  # no worker here to reply
                *rounds,
            ],
        ),
        (
            "acks while every workspace call stalls 30 s",
            [
                "ack_latency.py",
                "--target",
                "amlbot",
                "--stall",
                "30",
                "--text",
                "compute list",
                "--reply-text",
                "--no-reference",  # the stall is amlbot's alone: acks, not ratios
                "--rounds",
                "1",
            ],
        ),
        (
            "acks at arrival rates, PostgreSQL",
            [
                "ack_arrivals.py",
                "--database",
                "postgres",
                *(["--rounds", "1", "--seconds", "5"] if quick else []),
            ],
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: minutes, not an hour")
    options = parser.parse_args()
    failed = 0
    for title, command in steps(options.quick):
        print(f"\n=== {title}: bench/{' '.join(command)}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], check=False)
        print(f"=== ({time.monotonic() - started:.0f} s, exit status {result.returncode})")
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
