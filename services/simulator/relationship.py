"""Touchpoints and NPS answers for the live demo (``services/simulate.py``), so the
workload view, the touchpoints due and the NPS page have something to show.

Strategic accounts are visited about monthly with a business review a quarter (CAD-03),
enterprise accounts called about every two months (CAD-08), non-focus accounts get the
odd email (CAD-12); a declining or churning account's CSM has let the visits lapse, so
some touchpoints are overdue. Each account answers the NPS survey about every six months
(SV-05), higher when it is healthy. Deterministic per account (its own random stream);
every event is a public ``touchpoint`` or ``nps`` event.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.i18n import DEFAULT_LANGUAGE

# (touchpoint kind, days between them) per tier; non-focus: an email now and then.
CADENCE = {
    "strategic": (("visit", 30), ("qbr", 91)),
    "enterprise": (("call", 61),),
    "non-focus": (("email", 45),),
}
# How far back the touchpoints reach: a little over a quarter, the longest cadence.
TOUCH_DAYS = 120
# NPS answers reach back a year: two survey rounds (SV-05).
SURVEY_ROUNDS = 2
SURVEY_DAYS = 182
# Answers by usage profile: (lowest, highest) score.
SCORES = {"healthy": (7, 10), "growing": (8, 10), "declining": (4, 8), "churning": (0, 6)}
# What customers write with their NPS answer, in the demo's language: the Chinese demo
# had shown English comments among Chinese ones (found in a CS lead's review).
COMMENTS = {
    "en": {
        "promoter": ("The team answers fast.", "Our CSM is great, recommended!",
                     "Reports save us hours."),
        "passive": ("Fine, but the app is slow.", "Enough features; more training would help."),
        "detractor": ("Too many bugs since the upgrade.", "Go-live dragged on, little to show."),
    },
    "zh-CN": {
        "promoter": ("团队响应很快。", "客户成功经理很专业，推荐！", "报表帮我们省了很多时间。"),
        "passive": ("还行，就是应用有点慢。", "功能够用，培训还可以更多。"),
        "detractor": ("升级以后问题太多。", "实施拖得太久，效果不明显。"),
    },
}  # fmt: skip
LAPSING = ("declining", "churning")


def relationship_events(
    accounts: Sequence[dict[str, Any]],
    profiles: Sequence[str],
    now: datetime,
    language: str = DEFAULT_LANGUAGE,
) -> list[dict[str, Any]]:
    """The touchpoints and NPS answers of ``accounts`` (their facts as sent) up to ``now``;
    the answers' comments in ``language``."""
    comments = COMMENTS.get(language, COMMENTS[DEFAULT_LANGUAGE])
    events: list[dict[str, Any]] = []
    for facts, profile in zip(accounts, profiles, strict=True):
        rng = random.Random(f"{facts['account_id']}:relationship")
        events += _touchpoints(facts, profile, now, rng)
        events += _answers(facts["account_id"], profile, now, rng, comments)
    return events


def _touchpoints(
    facts: dict[str, Any], profile: str, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    account_id, out = facts["account_id"], []
    email = (facts.get("owner") or {}).get("email")
    for kind, every in CADENCE.get(facts.get("tier") or "", ()):
        # The newest one: within the cadence, or well past it for a lapsing account.
        back = (
            rng.randint(every // 2 + 10, every + 30)
            if profile in LAPSING
            else rng.randint(1, every - 3)
        )
        while back < TOUCH_DAYS:
            at = now - timedelta(days=back, hours=rng.randint(1, 8))
            out.append(
                {
                    "kind": "touchpoint",
                    "event_id": f"sim-{kind}-{account_id}-{back}",
                    "account_id": account_id,
                    "occurred_at": at.isoformat(),
                    "touchpoint_kind": kind,
                    "csm_email": email,
                }
            )
            back += every + rng.randint(-5, 5)
    return out


def _answers(
    account_id: str,
    profile: str,
    now: datetime,
    rng: random.Random,
    comments: dict[str, tuple[str, ...]],
) -> list[dict[str, Any]]:
    low, high = SCORES.get(profile, (6, 10))
    out = []
    for round_ in range(SURVEY_ROUNDS):
        if rng.random() < 0.3:  # not every account answers every round
            continue
        score = rng.randint(low, high)
        kind = "promoter" if score >= 9 else "detractor" if score <= 6 else "passive"
        back = round_ * SURVEY_DAYS + rng.randint(3, 60)
        out.append(
            {
                "kind": "nps",
                "event_id": f"sim-nps-{account_id}-{round_}",
                "account_id": account_id,
                "occurred_at": (now - timedelta(days=back)).isoformat(),
                "user_id": f"{account_id}-u0",
                "score": score,
                "comment": rng.choice(comments[kind]) if rng.random() < 0.6 else None,
            }
        )
    return out
