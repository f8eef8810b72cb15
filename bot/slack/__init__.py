"""The Slack edge: Bolt listeners, Block Kit views, and the outbox deliverer for Slack.

Start at `app.build_slack` (everything assembled) and `http.asgi_app` (the HTTP
endpoint); extension points: `app.Registrar` and the table `renderers.RENDERERS`.
"""
