"""Alerting files for tests: the shipped rules (all or some) with test timings."""

from __future__ import annotations

import re
from pathlib import Path

from shared.alerting.schema import default_alerting_source, parse_alerting

# Immediate, quiet defaults: no grouping wait, no digest, reminders far off.
TEST_NOTIFY = {
    "repeat_interval": '"1d"',
    "escalate_after": '{ critical = "4h", warning = "2d" }',
    "group_wait": '"0s"',
    "digest_hour": "-1",
    "send_resolved": "true",
}


def alerting_toml(
    rules: list[str] | None = None, *, extra: str = "", routing: str = "", **notify: str
) -> str:
    """The default file with only ``rules`` (ids; None keeps all), ``notify`` values
    (TOML literals) over TEST_NOTIFY, ``routing`` replacing its routing tables, and
    ``extra`` rules appended."""
    source = default_alerting_source()
    head, _, rest = source.partition("[[rule]]")
    body, _, _tail = ("[[rule]]" + rest).partition("# --- who hears about it")
    blocks = [b for b in re.split(r"(?m)^(?=\[\[rule\]\])", body) if b.strip()]
    kept = [b for b in blocks if rules is None or _id(b) in rules]
    settings = {**TEST_NOTIFY, **notify}
    notify_toml = "[notify]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    text = head + "".join(kept) + extra + "\n" + (routing or _DEFAULT_ROUTING) + "\n" + notify_toml
    parse_alerting(text)  # fail here, in the test, if it does not parse
    return text


_DEFAULT_ROUTING = """[routing]
tiers = { strategic = ["cs_lead", "sales_manager"] }
escalate_to = ["cs_lead"]
"""


def _id(block: str) -> str:
    match = re.search(r'(?m)^id = "([^"]+)"', block)
    return match[1] if match else ""


def write_alerting(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)
