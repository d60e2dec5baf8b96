"""A CSM's workload and the NPS loop: capacity by tier (SEG-10), touchpoints due by the
tier's cadence (CAD-03/08/12), reassignment of accounts between CSMs, NPS per account
and segment (SV-01..SV-05) and the advocacy list.

``cadence.py``, ``capacity.py`` and ``nps.py`` are pure; ``records.py`` keeps every
touchpoint and NPS answer scoring applies; ``reads.py`` reads them back for the API
(``api.py``) and, through ``services.scoring.queries``, the dashboard; ``reassign.py``
turns a reassignment into account-facts events.
"""
