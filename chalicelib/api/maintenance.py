"""Scheduled work: releasing holds that no request will settle any more."""

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
