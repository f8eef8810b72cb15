"""The simulated workspace: an Azure ML workspace on this machine, kept in the bot's database.

`workspace.LocalWorkspace` is the port's implementation; beside it, one module per part of
the simulation: `tables` (its `sim_` tables), `seed` (what a new workspace holds),
`timeline` (how jobs and clusters move through time, pure), `jobs`, `access` (role
assignments) and `quota`.
"""

from workspaces.local.workspace import LocalWorkspace

__all__ = ["LocalWorkspace"]
