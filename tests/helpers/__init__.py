"""Helpers that several test modules share, one module per kind; the fixtures stay in conftest.py."""
