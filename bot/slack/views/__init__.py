"""Block Kit built with `slack_sdk.models`, from the core's platform-neutral descriptions.

Every builder returns plain dicts through `as_payload`, which converts the models (that is
when slack_sdk checks its limits) and adds the checks slack_sdk leaves out.
"""
