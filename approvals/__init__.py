"""Policy, the request state machine, the store and the audit trail. Knows no Slack, no Azure."""
