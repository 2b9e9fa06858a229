"""A local webhook receiver: the customer's business endpoint for tests and the demo (never imported by shared/)."""

from local.webhook.receiver import Delivery, Misbehaviour, WebhookReceiver

__all__ = ["Delivery", "Misbehaviour", "WebhookReceiver"]
