"""`response_url`s minted by the fake behave like Slack's: ephemeral by default,
`in_channel` posts, `replace_original`/`delete_original` act on the clicked message."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack_api import FakeSlack
from tests.slack_fake.conftest import BOB, CHANNEL


def test_a_post_is_ephemeral_to_the_invoking_user_by_default(slack: FakeSlack) -> None:
    url = slack.response_url(CHANNEL, BOB)

    response = WebhookClient(url).send(text="Request r-1 submitted")

    assert (response.status_code, response.body) == (200, "ok")
    (ephemeral,) = slack.ephemerals(user=BOB)
    assert (ephemeral.text, ephemeral.via) == ("Request r-1 submitted", "response_url")
    (post,) = slack.response_posts(url)
    assert (post.response_type, post.replace_original) == ("ephemeral", False)
    assert slack.messages_in(CHANNEL) == []


def test_in_channel_posts_a_message_everyone_sees(slack: FakeSlack) -> None:
    url = slack.response_url(CHANNEL, BOB)

    WebhookClient(url).send(text="Job j-7 submitted", response_type="in_channel")

    message = slack.last_message(CHANNEL)
    assert (message.text, message.via) == ("Job j-7 submitted", "response_url")


def test_replace_original_updates_the_clicked_message(client: WebClient, slack: FakeSlack) -> None:
    card = client.chat_postMessage(channel=CHANNEL, text="pending")
    url = slack.response_url(CHANNEL, BOB, message_ts=card["ts"])

    WebhookClient(url).send(text="approved", replace_original=True)

    message = slack.message(CHANNEL, card["ts"])
    assert (message.text, message.edits) == ("approved", 1)
    assert slack.response_posts(url)[0].replace_original is True


def test_delete_original_removes_the_clicked_message(client: WebClient, slack: FakeSlack) -> None:
    card = client.chat_postMessage(channel=CHANNEL, text="pending")
    url = slack.response_url(CHANNEL, BOB, message_ts=card["ts"])

    WebhookClient(url).send_dict({"delete_original": True})

    assert slack.messages_in(CHANNEL) == []
    assert slack.message(CHANNEL, card["ts"]).deleted is True


def test_invalid_blocks_are_refused_with_400(slack: FakeSlack) -> None:
    url = slack.response_url(CHANNEL, BOB)

    response = WebhookClient(url).send(text="x", blocks=[{"type": "section"}])

    assert (response.status_code, response.body) == (400, "invalid_blocks")
    assert slack.response_posts() == []


def test_empty_text_without_blocks_is_no_text(slack: FakeSlack) -> None:
    response = WebhookClient(slack.response_url(CHANNEL, BOB)).send(text="")

    assert (response.status_code, response.body) == (400, "no_text")


def test_an_unknown_response_url_is_404(slack: FakeSlack) -> None:
    response = WebhookClient(f"{slack.url}/response_url/T999999").send(text="hi")

    assert response.status_code == 404


def test_a_response_url_takes_five_posts_at_most(slack: FakeSlack) -> None:
    webhook = WebhookClient(slack.response_url(CHANNEL, BOB))
    statuses = [webhook.send(text=f"update {i}").status_code for i in range(6)]

    assert statuses == [200, 200, 200, 200, 200, 404]
    assert len(slack.ephemerals(user=BOB)) == 5
