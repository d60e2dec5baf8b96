"""The shared skeleton of the benches (``bench/*_bench.py``).

A bench runs as a script (``python bench/scoring_bench.py``), so ``bench/`` is on
``sys.path`` and this package imports as ``lib``: ``console`` (progress bars),
``processes`` (the services as helper processes), ``services`` (Kafka and PostgreSQL,
given or local), ``measure`` (CPU, percentiles, machine and commit), ``results``
(JSON and plot), ``watch`` (waiting on a consumer group) and ``baseline`` (the bare
consumer every scoring figure is compared against).
"""
