"""The alert latency bench (``bench/alert_latency_bench.py``) by concern: ``workload``
(trigger and background accounts), ``options``, ``slack`` (the Slack stand-in),
``probes`` (what is read from the running services), ``stack`` (the services under
test), ``phases`` (the run), ``figures`` (what the measurements say), ``report`` (JSON
and table) and ``plots``.
"""
