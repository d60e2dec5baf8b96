"""Backtest results: how well the score predicted churn, as text, JSON and HTML."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from services.scoring.backtest.metrics import (
    by_band,
    median_or_none,
    roc_auc,
    roc_curve,
    top_decile_lift,
)
from services.scoring.backtest.replay import Firing, Replay, Snapshot
from services.scoring.model.schema import HealthModel

BANDS = ("red", "yellow", "green")
BASELINE = "days_since_last_use"
# Lead time counts the red scores within this many days before churn.
LEAD_WINDOW_DAYS = 180


def _labels(snapshots: Sequence[Snapshot], churn: dict[str, Any], horizon: int) -> list[bool]:
    out = []
    for s in snapshots:
        gone = churn.get(s.account_id)
        out.append(gone is not None and s.day < gone <= s.day + timedelta(days=horizon))
    return out


def _risk(s: Snapshot) -> float:
    return 100.0 - (s.score if s.score is not None else 50.0)


def _weighted(s: Snapshot, weights: dict[str, float]) -> float:
    present = {g: v for g, v in s.groups.items() if weights.get(g, 0) > 0}
    total = sum(weights[g] for g in present)
    return 100.0 - (sum(weights[g] * v for g, v in present.items()) / total if total else 50.0)


def evaluate_horizon(result: Replay, horizon: int, model: HealthModel) -> dict[str, Any]:
    snaps = [s for s in result.snapshots if s.score is not None]
    labels = _labels(snaps, result.churn, horizon)
    risks = [_risk(s) for s in snaps]
    baseline = [float(s.inputs.get(BASELINE) or 0) for s in snaps]
    model_auc = roc_auc(risks, labels)
    baseline_auc = roc_auc(baseline, labels)
    measures = {}
    names = sorted({k for s in snaps for k, v in s.inputs.items() if isinstance(v, int | float)})
    for name in names:
        rows = [
            (float(s.inputs[name]), y)
            for s, y in zip(snaps, labels, strict=True)
            if isinstance(s.inputs.get(name), int | float)
        ]
        auc = roc_auc([r[0] for r in rows], [r[1] for r in rows]) if rows else None
        if auc is not None:
            # Direction-free power: 0.5 is none; "higher means riskier" says which way.
            measures[name] = {
                "auc": round(max(auc, 1 - auc), 4),
                "higher_is_riskier": auc >= 0.5,
                "snapshots": len(rows),
            }
    current = {g: grp.weight for g, grp in model.groups.items()}
    group_power = {}
    for g in current:
        rows = [(100 - s.groups[g], y) for s, y in zip(snaps, labels, strict=True) if g in s.groups]
        auc = roc_auc([r[0] for r in rows], [r[1] for r in rows]) if rows else None
        group_power[g] = auc
    # Suggested: weight each group by how much better than chance it ranked churners.
    total = sum(current.values())
    edges = {g: max((a or 0.5) - 0.5, 0.01) for g, a in group_power.items()}
    suggested = {g: round(total * e / sum(edges.values()), 1) for g, e in edges.items()}
    lead_times = []
    for account, gone in result.churn.items():
        reds = [
            s.day
            for s in snaps
            if s.account_id == account
            and s.band == "red"
            and gone - timedelta(days=LEAD_WINDOW_DAYS) <= s.day < gone
        ]
        if reds:
            lead_times.append((gone - min(reds)).days)
    return {
        "horizon_days": horizon,
        "snapshots": len(snaps),
        "churn_snapshots": sum(labels),
        "roc_auc": _r(model_auc),
        "baseline_roc_auc": _r(baseline_auc),
        "auc_gain_over_baseline": _r(
            None if model_auc is None or baseline_auc is None else model_auc - baseline_auc
        ),
        "bands": [b.__dict__ for b in by_band([s.band for s in snaps], labels, BANDS)],
        "top_decile_lift": _r(top_decile_lift(risks, labels)),
        "median_lead_time_days": median_or_none(lead_times),
        "churners_flagged_red": len(lead_times),
        "measures": dict(sorted(measures.items(), key=lambda kv: -kv[1]["auc"])),
        "group_auc": {g: _r(a) for g, a in group_power.items()},
        "weights": {
            "current": current,
            "suggested": suggested,
            "current_roc_auc": _r(roc_auc([_weighted(s, current) for s in snaps], labels)),
            "suggested_roc_auc": _r(roc_auc([_weighted(s, suggested) for s in snaps], labels)),
            "note": "suggested only, never applied: PUT /v1/health-model to adopt them "
            "(both AUCs re-weigh the stored group scores, without caps or profiles)",
        },
        "_roc": {"model": roc_curve(risks, labels), "baseline": roc_curve(baseline, labels)},
    }


def rule_quality(result: Replay, horizons: Sequence[int]) -> dict[str, Any]:
    """Per alert rule: how often the account churned within each horizon after the rule
    fired, beside the rate for any scored account-day (the lift is their ratio)."""
    snaps = [s for s in result.snapshots if s.score is not None]
    base: dict[int, float | None] = {}
    for h in horizons:
        labels = _labels(snaps, result.churn, h)
        base[h] = sum(labels) / len(labels) if labels else None
    by_rule: dict[str, list[Firing]] = {}
    for f in result.firings:
        gone = result.churn.get(f.account_id)
        if gone is None or f.day < gone:  # firings after the account left say nothing
            by_rule.setdefault(f.rule, []).append(f)
    rules = []
    for rule, fired in sorted(by_rule.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        churned: dict[str, float] = {}
        lift: dict[str, float | None] = {}
        for h in horizons:
            share = sum(_churns_within(result, f, h) for f in fired) / len(fired)
            churned[str(h)] = round(share, 4)
            rate = base[h]
            lift[str(h)] = round(share / rate, 2) if rate else None
        longest = max(horizons)
        leads = [
            float((result.churn[f.account_id] - f.day).days)
            for f in fired
            if _churns_within(result, f, longest)
        ]
        rules.append(
            {
                "rule": rule,
                "fired": len(fired),
                "accounts": len({f.account_id for f in fired}),
                "churned_within": churned,
                "lift": lift,
                "median_days_to_churn": median_or_none(leads),
            }
        )
    return {"base_churn_rate": {str(h): _r(b) for h, b in base.items()}, "rules": rules}


def _churns_within(result: Replay, f: Firing, horizon: int) -> bool:
    gone = result.churn.get(f.account_id)
    return gone is not None and f.day < gone <= f.day + timedelta(days=horizon)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def build(result: Replay, horizons: Sequence[int], model: HealthModel) -> dict[str, Any]:
    accounts = {s.account_id for s in result.snapshots}
    return {
        "model_version": model.version,
        "events": result.events,
        "rejected_lines": result.rejected,
        "accounts": len(accounts),
        "churned_accounts": len(set(result.churn) & accounts),
        "from": result.first_day.isoformat() if result.first_day else None,
        "to": result.last_day.isoformat() if result.last_day else None,
        "horizons": [evaluate_horizon(result, h, model) for h in horizons],
        "alert_rules": rule_quality(result, horizons),
    }


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the plotting data."""
    return {
        **report,
        "horizons": [
            {k: v for k, v in h.items() if not k.startswith("_")} for h in report["horizons"]
        ],
    }


def text(report: dict[str, Any]) -> str:
    lines = [
        f"Backtest of model {report['model_version']}: {report['accounts']} accounts, "
        f"{report['churned_accounts']} churned, {report['events']} events, "
        f"{report['from']} → {report['to']}",
        "",
        f"{'horizon':>8} {'AUC':>6} {'baseline':>9} {'gain':>6} {'lift@10%':>9} "
        f"{'P(red)':>7} {'R(red)':>7} {'lead days':>10}",
    ]
    for h in report["horizons"]:
        red = next(b for b in h["bands"] if b["band"] == "red")
        lines.append(
            f"{h['horizon_days']:>7}d {_f(h['roc_auc']):>6} {_f(h['baseline_roc_auc']):>9} "
            f"{_f(h['auc_gain_over_baseline'], '+.3f'):>6} {_f(h['top_decile_lift'], '.2f'):>9} "
            f"{_f(red['precision']):>7} {_f(red['recall']):>7} "
            f"{_f(h['median_lead_time_days'], '.0f'):>10}"
        )
    first = report["horizons"][0] if report["horizons"] else None
    if first:
        lines += ["", f"Measures by predictive power ({first['horizon_days']}-day horizon, AUC):"]
        for name, m in list(first["measures"].items())[:12]:
            arrow = "↑ riskier" if m["higher_is_riskier"] else "↓ riskier"
            lines.append(f"  {name:<32} {m['auc']:.3f}  {arrow}")
        w = first["weights"]
        lines += [
            "",
            f"Suggested group weights (not applied): {w['suggested']} — AUC "
            f"{_f(w['current_roc_auc'])} → {_f(w['suggested_roc_auc'])}",
        ]
    lines += _rules_text(report.get("alert_rules"))
    return "\n".join(lines) + "\n"


def _rules_text(quality: dict[str, Any] | None) -> list[str]:
    if not quality or not quality["rules"]:
        return []
    horizons = list(quality["base_churn_rate"])
    first = horizons[0]
    head = "".join(f"{'≤' + h + 'd':>8}" for h in horizons)
    base = ", ".join(_pct(quality["base_churn_rate"][h]) for h in horizons)
    lines = [
        "",
        "Alert rules in the replay: share of firings followed by churn within N days "
        f"(any scored account-day: {base})",
        f"  {'rule':<28} {'fired':>6} {'accts':>6}{head} {'lift@' + first + 'd':>9} {'days':>5}",
    ]
    for r in quality["rules"]:
        shares = "".join(f"{_pct(r['churned_within'][h]):>8}" for h in horizons)
        lines.append(
            f"  {r['rule']:<28} {r['fired']:>6} {r['accounts']:>6}{shares} "
            f"{_f(r['lift'][first], '.2f'):>9} {_f(r['median_days_to_churn'], '.0f'):>5}"
        )
    lines.append("  (days: median from firing to churn, among firings followed by churn)")
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _f(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def html_report(report: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    fig, axes = plt.subplots(1, len(report["horizons"]), figsize=(4.2 * len(report["horizons"]), 4))
    axes = axes if len(report["horizons"]) > 1 else [axes]
    for ax, h in zip(axes, report["horizons"], strict=True):
        for key, label in (
            ("model", f"model (AUC {_f(h['roc_auc'])})"),
            ("baseline", f"days since last use ({_f(h['baseline_roc_auc'])})"),
        ):
            xs, ys = zip(*h["_roc"][key], strict=True)
            ax.plot(xs, ys, label=label)
        ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
        ax.set_title(f"churn within {h['horizon_days']} days")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(loc="lower right", fontsize=8)
    images.append(("ROC curves", _png(fig)))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(report["horizons"])
    for i, h in enumerate(report["horizons"]):
        rates = [b["precision"] or 0 for b in h["bands"]]
        ax.bar(
            [x + i * width for x in range(len(BANDS))], rates, width, label=f"{h['horizon_days']}d"
        )
    ax.set_xticks([x + width * (len(report["horizons"]) - 1) / 2 for x in range(len(BANDS))], BANDS)
    ax.set_ylabel("share of snapshots followed by churn")
    ax.legend()
    images.append(("Churn rate by band", _png(fig)))
    plt.close(fig)
    quality = report.get("alert_rules") or {}
    if quality.get("rules"):
        first = next(iter(quality["base_churn_rate"]))
        rules = list(reversed(quality["rules"]))
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(rules) + 1.2))
        ax.barh([r["rule"] for r in rules], [r["churned_within"][first] for r in rules])
        base = quality["base_churn_rate"][first] or 0
        ax.axvline(base, color="k", linestyle=":", label=f"any account-day ({base:.0%})")
        ax.set_xlabel(f"share of firings followed by churn within {first} days")
        ax.legend(loc="lower right", fontsize=8)
        images.append(("Alert rules: churn after firing", _png(fig)))
        plt.close(fig)
    body = "".join(
        f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{d}'>"
        for t, d in images
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>healthwatch backtest</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}"
        "pre{background:#f6f6f6;padding:1em}</style></head><body>"
        f"<h1>healthwatch backtest</h1><pre>{html.escape(text(report))}</pre>{body}</body></html>"
    )
