"""The workspace layer: one port for everything the bot does in an Azure ML workspace.

`port.WorkspaceBackend` is the interface; `local.LocalWorkspace` simulates a workspace on
this machine, `azure` (imported lazily, it pulls in azure-ai-ml) talks to real Azure.
"""
