"""Top-ups through a payment provider, refunds and disputes, redemption codes."""
