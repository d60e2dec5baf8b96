"""Success plans: per account, milestones with a target date and a measure to reach (or
checked by hand), their progress read from the same measures the health score uses,
and a deviation alert when one is at risk or missed (Gainsight's success plans,
Vitally's projects; the handbook's LC-05…LC-07 milestones).

- ``templates.py``: the plan templates per tier and lifecycle stage (``default_plans.toml``).
- ``progress.py``: pure: a milestone's state from a measure's value and the day.
- ``store.py``: the plan tables, read and written.
- ``hook.py``: scoring's step: templates applied to new accounts, progress stored, alerts.
- ``queries.py``: what the dashboard and the API read and change (the one import other
  packages may make).
- ``api.py``: ``/v1/accounts/{id}/plan`` and ``/v1/plans``.
"""
