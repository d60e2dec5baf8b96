"""One alert per account problem (issue 15): a family's alert in scoring's event time
(``group_step``), and what the alerts service tells about it: the first symptom is
told, a symptom that attaches is stored silently, a rise in severity is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from services.scoring.rules import RuleState, group_step
from shared.alerting.schema import Rule, parse_alerting
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.storage.tables import alerts
from tests.unit.test_alert_lifecycle import T0, World, world

__all__ = ["world"]  # the fixture, shared with the lifecycle tests

FAMILY = parse_alerting(
    """
version = "g"
[[rule]]
id = "yellow"
type = "band"
severity = "warning"
family = "health"
when = [{ measure = "band", op = "in", value = ["yellow", "red"] }]
[[rule]]
id = "red"
type = "band"
severity = "critical"
family = "health"
when = [{ measure = "band", op = "==", value = "red" }]
"""
)
YELLOW, RED = FAMILY.rules
AT = datetime(2026, 11, 1, tzinfo=UTC)
OK = RuleState()


def firing(rule: Rule) -> RuleState:
    return RuleState("firing", AT, None, rule.severity.value, 1)


def test_a_family_is_one_alert_while_any_symptom_fires() -> None:
    assert FAMILY.families() == {"health": [YELLOW, RED]}
    quiet = [(YELLOW, OK), (RED, OK)]
    yellow = [(YELLOW, firing(YELLOW)), (RED, OK)]
    red = [(YELLOW, firing(YELLOW)), (RED, firing(RED))]
    group, told = group_step(OK, quiet, yellow, AT)
    assert told is not None and (told.status, told.revision, told.fire_count) == ("firing", 0, 1)
    # Nothing moved: nothing to tell.
    assert group_step(group, yellow, yellow, AT) == (group, None)
    # Red attaches to the open alert, raising it: a revision, not a second alert.
    group, told = group_step(group, yellow, red, AT)
    assert told is not None and (told.revision, told.severity) == (1, Severity.critical)
    assert (group.fire_count, group.severity) == (1, "critical")
    # Back to yellow: the same alert, lower.
    group, told = group_step(group, red, yellow, AT)
    assert told is not None and (told.revision, told.severity) == (2, Severity.warning)
    # Every symptom gone: resolved; the next firing is the family's second alert.
    group, told = group_step(group, yellow, quiet, AT)
    assert told is not None and (told.status, told.revision) == ("resolved", 3)
    group, told = group_step(group, quiet, red, AT)
    assert told is not None and (told.revision, told.fire_count) == (0, 2)


def family_alert(revision: int, severity: Severity, status: str = "firing") -> AlertEvent:
    return AlertEvent(
        alert_id="acme:health:1",
        revision=revision,
        account_id="acme",
        rule="yellow",
        severity=severity,
        status=status,  # type: ignore[arg-type]
        title="acme: health",
        summary="",
        owner=Owner(email="anna@example.com", slack_id="U0ANNA"),
        fired_at=T0,
        details={"family": "health", "symptoms": [{"rule": "yellow", "title": "x"}]},
    )


async def test_only_a_rise_in_severity_is_told_again(world: World) -> None:
    await world.receive(family_alert(0, Severity.warning))
    await world.receive(family_alert(1, Severity.warning))  # a symptom attached
    await world.receive(family_alert(2, Severity.critical))  # worse: told
    await world.receive(family_alert(3, Severity.warning))  # better: stored, not told
    await world.receive(family_alert(4, Severity.warning, "resolved"))
    assert [n[1] for n in await world.notices()] == ["fire", "update:2", "resolve"]
    row = await world.alert("acme:health:1")
    assert (row.revision, row.status) == (4, "resolved")  # type: ignore[attr-defined]


async def test_an_acknowledged_alert_stays_acknowledged_as_symptoms_attach(
    world: World,
) -> None:
    await world.receive(family_alert(0, Severity.warning))
    async with world.engine.begin() as conn:
        await conn.execute(
            update(alerts).where(alerts.c.alert_id == "acme:health:1").values(status="acknowledged")
        )
    world.clock.now += timedelta(minutes=5)
    await world.receive(family_alert(1, Severity.warning))
    row = await world.alert("acme:health:1")
    assert (row.status, row.revision) == ("acknowledged", 1)  # type: ignore[attr-defined]
    assert [n[1] for n in await world.notices()] == ["fire"]
    # Worse: told, as for an alert nobody acknowledged (a warning taken on is no critical
    # taken on; nobody heard of it, found from outside), and still acknowledged.
    world.clock.now += timedelta(minutes=5)
    await world.receive(family_alert(2, Severity.critical))
    row = await world.alert("acme:health:1")
    assert (row.status, row.severity) == ("acknowledged", "critical")  # type: ignore[attr-defined]
    assert [n[1] for n in await world.notices()] == ["fire", "update:2"]


async def test_a_family_alert_takes_over_its_symptoms_own_open_alerts(world: World) -> None:
    # Open before the alerting file grouped the rule: it would never hear of its end.
    alone = family_alert(0, Severity.critical).model_copy(
        update={"alert_id": "acme:yellow:3", "details": {}}
    )
    await world.receive(alone)
    world.clock.now += timedelta(minutes=5)
    await world.receive(family_alert(0, Severity.warning))
    old = await world.alert("acme:yellow:3")
    assert (old.status, old.resolved_at) == ("resolved", world.clock.now)  # type: ignore[attr-defined]
    # Closed quietly (the problem goes on, in the family's alert), which is told.
    assert [n[:2] for n in await world.notices()] == [
        ("acme:yellow:3", "fire"),
        ("acme:health:1", "fire"),
    ]
