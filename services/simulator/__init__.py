"""Simulated product histories of several shapes, for backtests and tests.

Each shape is a generator of ``("event", dict)`` (the public event schema) and
``("churn", (account_id, day))`` items, deterministic by seed, so that a backtest does
not flatter one kind of product: the handbook's B2B CRM lives in
``services/simulate_history.py``; here are a single-user subscription app
(``subscription``) and a transactional shop (``transactional``).
"""
