"""Secrets at rest: the envelope (envelope.py) and the keepers of the key-encryption key (kms.py, local.py)."""
