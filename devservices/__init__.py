"""Real local services for healthwatch's tests, benches and developers: an Apache Kafka
broker and a PostgreSQL cluster as plain processes on 127.0.0.1, no Docker.

Development tooling, installed with the ``dev`` extra; production code (``services/``,
``shared/``) never imports it. Standard library only.

* ``kafka``: the real Apache Kafka broker (single-node KRaft, broker+controller in one
  JVM), assembled from Maven Central jars with ``resources/pom.xml`` and cached under
  ``$HEALTHWATCH_CACHE_DIR`` (default ``~/.cache/healthwatch``); ``kafka_wire`` is the
  readiness probe that speaks just enough of the wire protocol.
* ``postgres``: a throwaway cluster made with the server's own ``initdb``/``pg_ctl``.
* ``ports``, ``files``: the small helpers both share; ``cli``: the command line.

Command line::

    python -m devservices kafka [--dir D] [--port P]
    python -m devservices postgres [--dir D] [--port P]
    python -m devservices fetch-kafka [--cache-dir D]
    python -m devservices install-postgres
"""

from devservices.cli import main
from devservices.kafka import (
    BROKER_MAX_MESSAGE_BYTES,
    KAFKA_VERSION,
    KafkaBroker,
    default_cache_dir,
    fetch_kafka,
)
from devservices.ports import free_port
from devservices.postgres import (
    PostgresCluster,
    ensure_postgres_installed,
    find_postgres_bindir,
)

__all__ = [
    "BROKER_MAX_MESSAGE_BYTES",
    "KAFKA_VERSION",
    "KafkaBroker",
    "PostgresCluster",
    "default_cache_dir",
    "ensure_postgres_installed",
    "fetch_kafka",
    "find_postgres_bindir",
    "free_port",
    "main",
]
