"""Whether a health model's measures are ones the score computes.

A measure the inputs never hold has no data on any account: its weight goes to the
others, and a typo (``active_days_7dd``) left a model scoring without it while the
backtest only warned (found from outside). A new model (``PUT /v1/health-model``,
``healthwatch backtest --model``, ``calibrate --model``) naming one is refused, with the
nearest names; a model stored before this check still loads (the check runs on new
versions only, ``DocumentStore.save``'s ``check``).
"""

from __future__ import annotations

import difflib

from services.scoring.inputs import measure_names
from services.scoring.model.schema import HealthModel, ModelError


def unknown_measures(model: HealthModel) -> list[str]:
    """Each measure (and each input a measure or cap ``needs``) the score does not
    compute, with its place in the file and the nearest names."""
    names, per_name = measure_names(model.behaviour)
    known = sorted(names | {f"{base}[event]" for base in per_name})

    def computed(name: str) -> bool:
        base, bracket, rest = name.partition("[")
        return name in names or (bool(bracket) and base in per_name and rest.endswith("]"))

    places = [
        (f"groups.{group_name}.measures.{name}", name)
        for group_name, group in model.groups.items()
        for name in group.measures
    ]
    places += [
        (f"groups.{group_name}.measures.{measure}.needs", need)
        for group_name, group in model.groups.items()
        for measure, spec in group.measures.items()
        for need in spec.needs
    ]
    places += [(f"caps[{k}].needs", need) for k, cap in enumerate(model.caps) for need in cap.needs]
    problems = []
    for place, name in places:
        if computed(name):
            continue
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        problems.append(f"{place}: the health score computes no measure {name!r}{hint}")
    return problems


def check_model(model: HealthModel) -> None:
    """Raise ``ModelError`` listing every measure of ``model`` the score does not compute."""
    problems = unknown_measures(model)
    if problems:
        raise ModelError(
            "health model: "
            + "; ".join(problems)
            + ". The README's measures list names them (per event name: events_28d[<name>])."
        )
