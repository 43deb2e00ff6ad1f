"""Work outside requests: releasing holds that no request will settle any more, and carrying the
usage events the settlements wrote to the usage-outbox table on to Firehose (on AWS)."""

from __future__ import annotations

import logging

from chalice import Blueprint, Rate

from chalicelib.api.http import get_gateway

log = logging.getLogger(__name__)

maintenance = Blueprint(__name__)


@maintenance.schedule(Rate(5, unit=Rate.MINUTES))
def sweep_expired_holds(event: object) -> None:
    released = get_gateway().billing.sweep()
    log.info("released %d expired holds", released)


@maintenance.lambda_function(name="usage_forwarder")
def forward_usage_events(event: dict, context: object) -> dict:
    """Invoked by the usage-outbox table's stream with a batch of records; a failure raises, and
    the batch is delivered again (see storage/dynamodb/usage_outbox.py)."""
    forward = getattr(get_gateway().usage_sink, "forward", None)
    if forward is None:
        raise RuntimeError("usage events are forwarded only to Firehose (the DynamoDB storage)")
    return {"forwarded": forward(event.get("Records") or [])}
