"""Tokenway: an OpenAI-compatible LLM API gateway with exact prepaid billing."""
