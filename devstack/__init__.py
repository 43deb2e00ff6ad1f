"""Local development stack: an AWS emulator provisioned from the same template as production."""
