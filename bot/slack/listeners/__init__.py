"""Bolt listeners. Each module registers with `register(app, edge)`. The function Bolt
calls only acks (and, for a form, validates); the work is a job `(edge, delivery)` that
runs on one of `SlackEdge`'s thread pools after the ack.
"""
