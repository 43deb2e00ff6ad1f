"""Tokenway operator CLI: a client of the admin API, installed as the `tokenway` command."""
