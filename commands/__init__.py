"""Text -> typed request: the `/aml` grammar, its help and its errors. Knows no Slack, no Azure."""
