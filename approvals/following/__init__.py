"""Following jobs: `jobs` polls each followed job and announces every status change once,
in order; `eventgrid` turns Azure Event Grid job events into the same announcements."""
