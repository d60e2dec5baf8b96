"""The scoring bench (``bench/scoring_bench.py``) by concern: ``workload`` (accounts and
their events), ``options``, ``timers`` (SQL and step timings), ``state`` (the state's
size), ``runs`` (one scoring run each way: in process, as services, as an import),
``phases`` (the run in order), ``report`` (JSON and warnings), ``tables`` and ``plots``.
"""
