"""What an approved request does, one module per action, each a handler in the table of
`handlers.py`:

    access     access.py      a role assignment on a cluster (or an active grant extended)
    datastore  datastore.py   an identity-based datastore registered
    job        job.py         a command job submitted, then followed
    compute    compute.py     a compute setting changed (stop, min nodes, idle times)
    drift      drift_fix.py   a drift-check finding fixed in Azure
    review     review.py      a break-glass use reviewed: records the verdict, touches nothing

`approvals.execution` carries a request out through its handler (exactly once, under a
lease); `approvals.resumption` picks up what a dead process left in flight.
"""
