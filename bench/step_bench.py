"""Where the per-account scoring step spends its time: ``score_account`` and its parts,
and the measures read from the usage state, each timed alone on the arguments a sweep
gives it (``sweep_bench.py``'s workload, a day after its last event).

The sweep, an import's days and every batch's rescoring run this step once per account;
it is what a vectorised scorer would replace, so the parts say what each would save.
Builds ``sweep_bench.py``'s template (1,000 imported accounts, about a minute), sweeps a
fresh copy of it while recording the step's arguments for ``--accounts`` accounts, then
times each part on those arguments in this process (the best of ``--repeat`` rounds,
microseconds per account)::

    python bench/step_bench.py --database-url postgresql+asyncpg://…/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import timeit
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sweep_bench
from lib.measure import result_header
from lib.services import create_database
from sqlalchemy import select

import services.scoring.processor as processor_module
from services.scoring import danger, explain, inputs, rules, step, usage
from services.scoring.measures import Measures
from services.scoring.model.evaluate import evaluate
from services.scoring.step import AccountHistory, ModelAndRules
from services.scoring.sweep import CHUNK
from services.scoring.usage_measures import measure_usage
from shared.storage.db import create_engine
from shared.storage.tables import account_usage

Captured = list[tuple[Any, AccountHistory, dict[str, Any]]]


async def capture(server: str, accounts: int) -> tuple[ModelAndRules, Captured, list[bytes]]:
    """Sweep a fresh copy of the template, recording the first ``accounts`` steps'
    arguments; and the stored usage values of as many accounts."""
    url = await create_database(server, "step_bench_run", template=sweep_bench.TEMPLATE)
    captured: Captured = []
    using: list[ModelAndRules] = []
    original = step.score_account  # the processor's, imported from step

    def recording(measures: Any, with_: ModelAndRules, earlier: AccountHistory, **kw: Any) -> Any:
        if len(captured) < accounts:
            captured.append((measures, earlier, kw))
            using[:] = [with_]
        return original(measures, with_, earlier, **kw)

    # The processor calls the name it imported: replaced there for the sweep.
    processor_module.score_account = recording  # type: ignore[attr-defined,assignment]
    try:
        await sweep_bench.worker(url, 0.0)
    finally:
        processor_module.score_account = original  # type: ignore[attr-defined]
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(account_usage.c.state).limit(accounts)
            blobs = list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()
    return using[0], captured, blobs


def parts(
    using: ModelAndRules, captured: Captured, blobs: list[bytes]
) -> dict[str, Callable[[], Any]]:
    """Each part as a call over every captured account."""
    model = using.model
    raws = [inputs.model_inputs(m, model.depth, model.sla, model.behaviour) for m, _, _ in captured]
    scores = [
        evaluate(model, raw, inputs.segment_of(m))
        for (m, _, _), raw in zip(captured, raws, strict=True)
    ]
    risks = [
        danger.assess(m, raw, model.danger) for (m, _, _), raw in zip(captured, raws, strict=True)
    ]
    shown = [
        {
            "score": s.value,
            "active_users_7d": m.active_users_7d,
            "events_7d": m.events_7d,
            **raw,
            "danger": [cause["code"] for cause in risk["causes"]],
        }
        for (m, _, _), raw, s, risk in zip(captured, raws, scores, risks, strict=True)
    ]
    values = [
        rules.rule_values(m, sh, s.band, risk["level"])
        for (m, _, _), sh, s, risk in zip(captured, shown, scores, risks, strict=True)
    ]
    states = [usage.decode(blob) for blob in blobs]
    day = (sweep_bench.NOW + timedelta(days=1)).date()
    together = list(zip(captured, raws, scores, risks, shown, values, strict=True))
    return {
        "score_account (all of the step)": lambda: [
            step.score_account(m, using, earlier, **kw) for m, earlier, kw in captured
        ],
        "model inputs": lambda: [
            inputs.model_inputs(m, model.depth, model.sla, model.behaviour) for m, _, _ in captured
        ],
        "  of them product-agnostic": lambda: [
            inputs.generic_inputs(m, model.behaviour) for m, _, _ in captured
        ],
        "model (evaluate)": lambda: [
            evaluate(model, raw, inputs.segment_of(m))
            for (m, _, _), raw in zip(captured, raws, strict=True)
        ],
        "danger": lambda: [
            danger.assess(m, raw, model.danger)
            for (m, _, _), raw in zip(captured, raws, strict=True)
        ],
        "explanation of a changed score": lambda: [
            step._rows(m, s, risk, sh, earlier) for ((m, earlier, _), _, s, risk, sh, _) in together
        ],
        "  of it what moved since the previous score": lambda: [
            explain.moved(
                sh, earlier.previous.inputs if earlier.previous else None, explain.MOVED_KEPT
            )
            for ((m, earlier, _), _, _, _, sh, _) in together
        ],
        "rule values": lambda: [
            rules.rule_values(m, sh, s.band, risk["level"])
            for ((m, _, _), _, s, risk, sh, _) in together
        ],
        "rules (step every rule)": lambda: [
            step._step_rules(m, using, earlier, v, sh, s, max(m.as_of_time, kw["now"]))
            for ((m, earlier, kw), _, s, _, sh, v) in together
        ],
        "usage value decoded": lambda: [usage.decode(blob) for blob in blobs],
        "usage value encoded": lambda: [usage.encode(state) for state in states],
        # What folding the newest day at every save would cost a batch's account.
        "newest day unfolded by an event, folded": lambda: [
            _fold_cycle(state) for state in states if state.ordinals()
        ],
        # As load_measures works them out: a chunk of the sweep's size at once.
        "usage measures from the states (chunks of 200)": lambda: [
            measure_usage(states[at : at + CHUNK], [day] * len(states[at : at + CHUNK]))
            for at in range(0, len(states), CHUNK)
        ],
    }


def _fold_cycle(state: usage.AccountUsage) -> int:
    """An event on the state's newest day, taken out of its arrays, then folded in;
    returns the days it holds."""
    state.fold()
    newest = date.fromordinal(int(state.columns.days[-1]))
    state.add(newest, "step-bench", 1.0, [("event", "step-bench", 1)])
    return int(state.fold().days.size)


def forget_kept(captured: Captured) -> None:
    """Drop what the captured measures worked out and kept (their cached properties), so
    each round pays for it as a sweep's step does, once per account: the capture's own
    sweep and the rounds before would have left it in them."""
    names = {f.name for f in dataclasses.fields(Measures)}
    for m, _, _ in captured:
        for kept in [name for name in m.__dict__ if name not in names]:
            del m.__dict__[kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="the server's maintenance db")
    parser.add_argument("--accounts", type=int, default=1_000, help="steps recorded and timed")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best is kept")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="JSON results")
    args = parser.parse_args()
    print("importing the sweep bench's 1,000 accounts into its template …", file=sys.stderr)
    path = Path(f"/tmp/step-bench-{os.getpid()}.ndjson")
    sweep_bench.write_workload(path, 1_000, 100_000, 20, args.seed)
    try:
        asyncio.run(sweep_bench.build(args.database_url, path))
    finally:
        path.unlink()
    using, captured, blobs = asyncio.run(capture(args.database_url, args.accounts))
    model = using.model
    timed: dict[str, float] = {}
    for name, run in parts(using, captured, blobs).items():
        best = min(
            timeit.repeat(run, setup=lambda: forget_kept(captured), number=1, repeat=args.repeat)
        )
        timed[name] = round(best / len(captured) * 1e6, 1)
        print(f"{name:36s} {timed[name]:8.1f} µs per account")
    if args.out:
        result = {
            **result_header("step", __file__, sys.argv[1:]),
            "accounts": len(captured),
            "inputs_per_account": round(
                sum(
                    len(inputs.model_inputs(m, model.depth, model.sla, model.behaviour))
                    for m, _, _ in captured
                )
                / len(captured),
                1,
            ),
            "rules": len(using.rules),
            "us_per_account": timed,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
