"""Risk cases and tasks (issue 16): the handbook's endangered-customer review (濒危客户
讨论会, DG-10…DG-14) and the tasks people must do by a date.

A case is opened for an account when a high-danger alert opens (``hooks``), from an
alert by a click, or by hand (``actions``); it has cause codes, a danger level, an action
plan of tasks, reviews on a cadence by danger level until it is closed with an outcome
and a lesson. Its people are the account's owner now (the accounts table), and for a
strategic account the lead and the sales owner too (DG-10). Tasks (``tasks``) are also
opened on their own: an NPS detractor's follow-up (SV-04). The timer pass (``timers``)
tells owners when a task or review is due and the lead when it is overdue, through the
alerts service's outbox (``notices``). Other packages read through ``queries`` and act
through ``actions`` and ``tasks`` (the import rules in ``pyproject.toml``).
"""
