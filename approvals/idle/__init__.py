"""Idle compute: `detection` (pure: what is idle and what it costs), `digest` (the sweep
that posts one digest per workspace, and `/aml idle`), `actions` (the digest's buttons:
stop, set minimum to 0, set idle time, snooze)."""
