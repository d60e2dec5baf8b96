"""The ingest bench (``bench/ingest_bench.py``) by concern: ``workload`` (the events),
``options``, ``meter`` (what one side measures in one round), ``server`` (the ingest
service under test and the Kafka checks), ``sides`` (HTTP, bare batched, bare stream),
``phases`` (the run), ``report`` (JSON and table) and ``plots``.
"""
