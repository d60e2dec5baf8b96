"""Connectors: the helpdesks' and CRMs' own payloads and exports turned into our events.

``zendesk.py`` and ``freshdesk.py`` translate ticket webhooks, ``hubspot.py`` company
property changes, ``accounts_csv.py`` CSV exports of HubSpot companies, Salesforce
accounts or our own columns; ``mapping.py`` is the file (TOML) saying which vendor
field is which of ours; ``signing.py`` checks each vendor's signature; ``routes.py``
serves the webhooks. docs/connectors.md says how to set each up on the vendor's side.
"""
