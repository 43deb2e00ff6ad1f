"""Test doubles for Tokenway's collaborators."""
