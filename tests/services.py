"""Addresses of the real services the suite runs against (started by scripts/services.sh).

No test skips when a service is missing: a connection error fails the run, as CI requires.
"""

from __future__ import annotations

import os
import uuid

REDIS_URL = os.environ.get("PUSHWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KAFKA_URL = os.environ.get("PUSHWIRE_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
ETCD_URL = os.environ.get("PUSHWIRE_TEST_ETCD_URL", "etcd://127.0.0.1:2379")
# The server part only; each test session creates and drops its own throwaway database.
MYSQL_SERVER_URL = os.environ.get("PUSHWIRE_TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")


def unique(prefix: str) -> str:
    """A name no other test (or concurrent run) uses: keeps runs independent on shared services."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"
