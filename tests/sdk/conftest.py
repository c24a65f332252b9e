from tests.realtime.conftest import live  # noqa: F401
