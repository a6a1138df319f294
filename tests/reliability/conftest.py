"""Reliability tests reuse the end-to-end environment of tests/integration."""

from tests.integration.conftest import sync_env  # noqa: F401 - a fixture, used by name
