"""Notifications and schedules: the bot speaking up on its own.

- `sweeps`: one round of every periodic check, `run_due(core, now)`; `run_startup(core)`.
- `jobs`: following jobs (poll) and announcing each status change once, in order.
- `eventgrid`, `webhook`: Azure Event Grid job events into the same announcements.
- `idle` (pure detection), `idle_sweep` (digests, `/aml idle`), `idle_actions` (buttons).
- `reminders`: grant-expiry warnings, reminders to leads, revocation and expiry.
- `runtime`: the APScheduler service that runs the sweeps.
- `slack_views`, `slack_actions`: the Slack edge of all this (the rest imports no Slack).
- `tables`, `claims`: the state in the database and how work is claimed in it.
"""
