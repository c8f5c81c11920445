"""Fixtures for the web app's unit tests."""

from tests.unit.webapi.web_support import web  # noqa: F401  (a fixture)
