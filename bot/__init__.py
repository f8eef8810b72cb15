"""The edges: the Slack app, the console front end, notifications, and the CLI that wires them."""
