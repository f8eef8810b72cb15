"""App Home: published each time someone opens the tab."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.deliveries import Delivery
from bot.slack.edge import SlackEdge
from bot.slack.telling import publish_home
from bot.slack.views.common import escape


def show_home(edge: SlackEdge, delivery: Delivery) -> None:
    event = delivery.body.get("event") or {}
    if event.get("tab") != "home":
        return
    user_id = str(event["user"])
    person = edge.person(delivery)
    if person is None:
        text = escape(edge.core.service.unknown_person().text)
        section = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        edge.client.views_publish(user_id=user_id, view={"type": "home", "blocks": [section]})
        return
    publish_home(edge, user_id, person)


def register(app: AsyncApp, edge: SlackEdge) -> None:
    app.event("app_home_opened")(edge.hand_over(show_home))
