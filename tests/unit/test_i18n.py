"""The message catalogs and the choice of language."""

from __future__ import annotations

import ast
import re
import string
import tomllib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import jinja2.nodes
from babel.messages.pofile import read_po

from services.dashboard.app import _when as when_filter
from services.scoring import danger, explain
from services.scoring.inputs import measure_names
from services.scoring.model.labels import GENERIC_LABELS, INPUT_LABELS
from services.scoring.model.schema import load_default_model
from shared.i18n import (
    DASH,
    LANGUAGES,
    LOCALE_DIR,
    catalog,
    format_money,
    format_num,
    format_pct,
    format_when,
    known_zone,
    negotiate,
    translate,
)
from shared.i18n.alert_text import alert_text
from tests.support.measures import AS_OF, measures


def test_translates_to_chinese_and_keeps_english() -> None:
    assert translate("zh-CN", "Sign out") == "退出登录"
    assert translate("en", "Sign out") == "Sign out"


def test_untranslated_text_stays_english_with_its_values() -> None:
    assert (
        translate("zh-CN", "{n} accounts, never translated", n=3) == "3 accounts, never translated"
    )


def test_every_language_but_english_has_a_catalog() -> None:
    for language in LANGUAGES[1:]:
        assert catalog(language), language


def test_choice_then_browser_then_default() -> None:
    assert negotiate("zh-CN", "en-US", "en") == "zh-CN"
    assert negotiate(None, "fr-FR, zh;q=0.8", "en") == "zh-CN"
    assert negotiate("klingon", "en-GB,zh-CN;q=0.5", "zh-CN") == "en"
    assert negotiate(None, None, "zh-CN") == "zh-CN"
    assert negotiate(None, "fr", "xx") == "en"
    for chinese in ("zh-Hans", "zh-Hans-CN", "zh-SG", "zh-TW", "ZH-cn"):
        assert negotiate(None, f"{chinese},en;q=0.8", "en") == "zh-CN", chinese
    assert negotiate(None, "zhx, en", "zh-CN") == "en"
    # Preference weights count: the header's order alone does not.
    assert negotiate(None, "en;q=0.5, zh-CN", "en") == "zh-CN"
    assert negotiate(None, "zh-CN;q=0, en;q=0.1", "zh-CN") == "en"
    # A hostile header picks nothing it should not, and raises nothing.
    for header in (
        "zh;q=nan, en;q=0.5",
        "en;q=abc, zh",
        ";;;,,,=;q=",
        "zh\x00\r\n;q=1",
        "x;q=1e999, " * 2000 + "zh-CN",
        "fr;q=-1, de;q=inf",
    ):
        assert negotiate(None, header, "en") in LANGUAGES, header
    assert negotiate(None, "zh;q=nan, en;q=0.5", "zh-CN") == "en"  # NaN is no weight


def test_moments_in_the_readers_language_and_zone() -> None:
    moment = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)
    assert format_when("en", moment, UTC) == "Dec 1, 2026 16:30"
    assert format_when("zh-CN", moment, ZoneInfo("Asia/Shanghai")) == "2026年12月2日 00:30"
    assert format_when("zh-CN", date(2026, 12, 2), UTC) == "2026年12月2日"
    assert format_when("en", None, UTC) == DASH


def test_money_with_its_currency_and_numbers_grouped() -> None:
    assert format_money("en", 1_200_000, "CNY") == "CN¥1,200,000"
    assert format_money("zh-CN", 1_200_000, "CNY") == "¥1,200,000"
    assert format_money("en", 5000.4, "usd") == "$5,000"
    assert format_money("zh-CN", None, "CNY") == DASH
    assert format_pct("en", 0.1234) == "12%" and format_pct("zh-CN", 0.1234, 1) == "12.3%"
    assert format_num("en", 1234.0) == "1,234" and format_num("en", 2.346, 2) == "2.35"
    assert format_num("en", 7, 0) == "7" and format_num("en", None) == DASH


def test_only_known_zone_names() -> None:
    assert known_zone("Asia/Shanghai") == ZoneInfo("Asia/Shanghai")
    for name in (None, "", "localtime", "../../etc/passwd", "/etc/localtime", "Mars/Base"):
        assert known_zone(name) is None


# --- every text a person reads has its Chinese ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = sorted(ROOT.glob("services/*/templates"))
PYTHON_DIRS = (ROOT / "services", ROOT / "shared")
# Constants holding texts that are translated where they are shown (a notice picked by
# a query parameter, a report's title by its kind): their string values are texts too.
TEXT_CONSTANTS = re.compile(r"[A-Z_]*(NOTICES|ERRORS|TITLES|LABELS|HEADINGS)")


def template_texts() -> dict[str, str]:
    """text → where: the literal first argument of every ``_()`` in a template."""
    env = jinja2.Environment()
    found: dict[str, str] = {}
    for folder in TEMPLATE_DIRS:
        for path in sorted(folder.rglob("*.html")):
            tree = env.parse(path.read_text(encoding="utf-8"))
            for call in tree.find_all(jinja2.nodes.Call):
                name = call.node.name if isinstance(call.node, jinja2.nodes.Name) else ""
                texts = call.args[:1] if name == "_" else call.args[:2] if name == "_n" else []
                for arg in texts:
                    if isinstance(arg, jinja2.nodes.Const):
                        found.setdefault(arg.value, str(path.relative_to(ROOT)))
    return found


def python_texts() -> dict[str, str]:
    """text → where: ``translate(lang, "…")``, ``N_("…")``, a report's ``f.t("…")``, and
    the strings of text constants (TEXT_CONSTANTS)."""
    found: dict[str, str] = {}
    for folder in PYTHON_DIRS:
        for path in sorted(folder.rglob("*.py")):
            where = str(path.relative_to(ROOT))
            for text in _texts_of(ast.parse(path.read_text(encoding="utf-8"))):
                found.setdefault(text, where)
    return found


def _texts_of(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from _call_text(node)
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        value = getattr(statement, "value", None)
        if any(isinstance(t, ast.Name) and TEXT_CONSTANTS.fullmatch(t.id) for t in targets):
            yield from _constant_strings(value)


# An API's refusals, answered in the request's language (shared/web.py): the English
# message's position in each call that makes one.
ANSWER_TEXTS = {
    "ClientError": 2,
    "error_response": 3,
    "ActionError": 0,
    "CaseError": 0,
    "CaseClosed": 0,
    "TaskError": 0,
    "_bounded_text": 1,
    "_unavailable": 1,
    "ValueRefused": 0,
}


def _call_text(call: ast.Call) -> Iterator[str]:
    func = call.func
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else ""
    )
    position = {"translate": 1, "N_": 0, "t": 0, **ANSWER_TEXTS}.get(name)
    if position is not None and len(call.args) > position:
        arg = call.args[position]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value


def _constant_strings(value: ast.expr | None) -> Iterator[str]:
    """The string values of a dict, or the strings of a tuple or list (nested)."""
    if isinstance(value, ast.Dict):
        items: list[ast.expr | None] = list(value.values)
    elif isinstance(value, ast.Tuple | ast.List):
        items = list(value.elts)
    elif isinstance(value, ast.Call) and value.args:  # N_("…") is found as a call
        return
    else:
        items = [value]
    for item in items:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            yield item.value
        elif isinstance(item, ast.Dict | ast.Tuple | ast.List):
            yield from _constant_strings(item)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_text_has_a_chinese_translation() -> None:
    texts = {**python_texts(), **template_texts()}
    assert len(texts) > 50  # the extraction itself works
    chinese = catalog("zh-CN")
    missing = sorted(f"{where}: {text!r}" for text, where in texts.items() if text not in chinese)
    assert missing == [], "no zh_CN translation (add it to your area's .po):\n" + "\n".join(missing)


def test_api_refusals_are_templates_not_f_strings() -> None:
    """An f-string message cannot be looked up in a catalog: its values go in
    ``values=`` (or a refusal's keywords), so the answer can be worded in Chinese."""
    found = []
    for folder in PYTHON_DIRS:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = getattr(func, "id", None) or getattr(func, "attr", "")
                at = ANSWER_TEXTS.get(name)
                if (
                    at is not None
                    and len(node.args) > at
                    and isinstance(node.args[at], ast.JoinedStr)
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_translations_keep_their_placeholders() -> None:
    wrong = [
        f"{msgid!r} -> {msgstr!r}"
        for msgid, msgstr in catalog("zh-CN").items()
        if _fields(msgid) != _fields(msgstr)
    ]
    assert wrong == []


def test_one_text_one_translation_across_areas() -> None:
    """Catalogs merge into one: a text two areas translate differently would show one
    area the other's wording (whichever file sorts last)."""
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for path in sorted((LOCALE_DIR / "zh_CN").glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle):
                if not (message.id and message.string and isinstance(message.id, str)):
                    continue
                first = seen.setdefault(message.id, (path.name, str(message.string)))
                if first[1] != message.string:
                    clashes.append(f"{message.id!r}: {first} vs {path.name} {message.string!r}")
    assert clashes == []


def test_default_alert_texts_have_chinese() -> None:
    """Every title and summary of the default alerting file (a rule without a summary
    shows its description) is in alerts.po, and a title as scoring renders it shows in
    Chinese, resolved or listed in a family's "Also: …" line."""
    rules = tomllib.loads((LOCALE_DIR.parents[1] / "alerting/default_alerting.toml").read_text())
    wanted = {r["title"] for r in rules["rule"]} | {
        r.get("summary") or r["description"] for r in rules["rule"]
    }
    wanted |= {r["next_step"] for r in rules["rule"]}  # every default rule says what to do
    assert all(r.get("next_step") for r in rules["rule"])
    with (LOCALE_DIR / "zh_CN" / "alerts.po").open("rb") as handle:
        have = {m.id for m in read_po(handle) if m.id and m.string}
    assert sorted(wanted - have) == []
    assert alert_text("zh-CN", "Resolved: Acme: 6 tickets open") == "已解除：Acme：6 个工单未解决"
    also = "Also: health 30 is red; nobody has used the product for 15 days."
    assert alert_text("zh-CN", also) == "另有：健康分 30，红色；已 15 天无人使用产品。"
    assert alert_text("zh-CN", "Acme: a rule a team wrote") == "Acme: a rule a team wrote"
    assert alert_text("en", "Acme: health 30 is red") == "Acme: health 30 is red"


def test_every_danger_cause_in_a_danger_alerts_title_has_chinese() -> None:
    """A danger alert lists its causes in its title: each shows in Chinese."""
    changed = datetime(2026, 11, 20, tzinfo=UTC)
    m = measures(
        icp_fit=False,
        decision_maker_changed_at=changed,
        champion_changed_at=changed,
        oldest_open_request_at=datetime(2026, 9, 1, tzinfo=UTC),
        first_seen=AS_OF - timedelta(days=100),
    )
    found = danger.assess(
        m,
        {
            "active_user_share_7d": 0.55,
            "depth_level": 1.0,
            "not_live_after_90d": 1,
            "oldest_open_ticket_days": 45.0,
        },
        load_default_model().danger,
    )
    causes = [cause["text"] for cause in found["causes"]]
    assert len(causes) == 7  # every cause danger.py knows
    shown = alert_text("zh-CN", "Acme: high danger — " + "; ".join(causes))
    assert shown == (
        "Acme：高危——客户不在理想客户画像之内；客户的决策人已更换；"
        "活跃但浅层：55% 的席位活跃，使用深度 1 级；购买 3 个月后仍未上线；"
        "有工单已 45 天未解决；客户内部的支持者已更换；有功能需求已等待超过 30 天"
    )


def test_an_account_name_holding_a_semicolon_stays_as_it_is() -> None:
    """The name's own "; " is no list separator (it became "；" and the rest stayed
    English), and a ";" without a space left the whole title in English."""
    ends = "Alpha; Beta Ltd: contract ends in 20 days"
    assert alert_text("zh-CN", ends) == "Alpha; Beta Ltd：合同将在 20 天后到期"
    assert alert_text("zh-CN", "Tom &amp;Jerry: contract ends in 20 days") == (
        "Tom &amp;Jerry：合同将在 20 天后到期"
    )
    resolved = "Resolved: Alpha; Beta Ltd: 6 tickets open"
    assert alert_text("zh-CN", resolved) == "已解除：Alpha; Beta Ltd：6 个工单未解决"


def test_numbers_no_page_can_print_show_as_a_dash_or_in_scientific_notation() -> None:
    assert format_num("en", float("inf")) == format_num("zh-CN", float("nan")) == DASH
    assert format_num("en", 1e30, 2) == "1E30"  # grouping it raised InvalidOperation
    assert format_num("en", 1234.5, 2) == "1,234.50"


def test_every_default_rule_has_a_name() -> None:
    """A default rule missing from RULE_LABELS shows its id on a Chinese page."""
    from services.scoring.plans.hook import RULE as PLAN_RULE
    from shared.alerting.schema import DEFAULT_ALERTING, parse_alerting
    from shared.i18n.alert_text import RULE_LABELS

    ids = {rule.id for rule in parse_alerting(DEFAULT_ALERTING.read_text()).rules}
    assert ids | {PLAN_RULE} == set(RULE_LABELS)


def test_pages_write_iso_days_and_moments_as_their_readers_do() -> None:
    """``|when`` of ISO text: a day, and a moment (a touchpoint's time failed the CSM's
    home page when the workload's last touchpoint was shown so)."""
    page = {"lang": "zh-CN", "zone": ZoneInfo("Asia/Shanghai")}
    assert when_filter(page, "2026-10-16") == "2026年10月16日"  # type: ignore[arg-type]
    assert when_filter(page, "2026-10-16T16:30:00+00:00") == "2026年10月17日 00:30"  # type: ignore[arg-type]


def test_what_moved_names_every_input_in_words_in_both_languages() -> None:
    """The health API's Chinese said "dau从 0 升至 2" and "uses over 7 days: use从 44 升至
    45" (found from outside): every input has words, and a per-name measure's words are
    translated beside the product's event name."""
    model = load_default_model()
    names, _ = measure_names(model.behaviour)
    labels = explain.labels(model)
    unworded = sorted(
        n for n in names if n not in labels and n not in GENERIC_LABELS and n not in INPUT_LABELS
    )
    assert unworded == []
    moves = [["dau", 0, 2], ["events_7d[use]", 44, 45]]
    texts = [entry["text"] for entry in explain.worded(moves, labels)]
    assert texts[0] == "users active today rose from 0 to 2"
    chinese = [alert_text("zh-CN", text) for text in texts]
    assert chinese == ["今日活跃用户数从 0 升至 2", "近 7 天使用次数：use从 44 升至 45（+2%）"]
    # Every per-name measure's words, not only some: "uses over 28 days: login从 30 升至
    # 31" stayed English, its words being in another catalog (found from outside).
    for measure, label in GENERIC_LABELS.items():
        (text,) = [e["text"] for e in explain.worded([[f"{measure}[login]", 30, 31]], labels)]
        shown = alert_text("zh-CN", text)
        assert label not in shown and shown.split("：")[1].startswith("login"), (measure, shown)


def test_one_chinese_word_per_kind_of_score() -> None:
    """得分 and 分数 stood for a measure's score and its points beside each other, and
    得分 for the health score in the portfolio's column (found from outside): the health
    score, a measure's score, its points and an NPS answer each have a word of their own."""
    zh = catalog("zh-CN")
    assert zh["Score"] == zh["Health score"] == "健康分"
    words = {zh[text] for text in ("Score", "Measure score", "Points", "Answer")}
    assert len(words) == 4
    # 评分 is an NPS answer (or scoring, the verb): never the health score's history or
    # its daily values; and an answer is never 打分 beside it.
    said = "\n".join(zh.values())
    assert "评分历史" not in said and "每日评分" not in said and "还没有评分" not in said
    assert "打分" not in said and "分数" not in said


def test_every_default_rule_says_the_accounts_facts_in_both_languages() -> None:
    """22 of the 27 default rules had no summary: their alerts said the handbook's note
    on the rule ("HL-05: health left green. Resolves at 75 …", "CAD-15: …") under "What
    it is about", not this account's facts (found from outside)."""
    from services.scoring import inputs, rules
    from shared.alerting.schema import DEFAULT_ALERTING, parse_alerting

    alerting = parse_alerting(DEFAULT_ALERTING.read_text(encoding="utf-8"))
    # What a rule's text may name: the values the step gives it (step.alert_event).
    model, m = load_default_model(), measures()
    raw = inputs.model_inputs(m, model.depth, model.sla, model.behaviour, ())
    shown = {"score": 50, "active_users_7d": 1, "events_7d": 1, **raw}
    known = set(rules.rule_values(m, shown, "red", "none")) | {"name", "change_text", "danger_text"}
    for rule in alerting.rules:
        assert rule.summary and rule.summary != rule.description, rule.id
        fields = {f for _, f, _, _ in string.Formatter().parse(rule.summary) if f}
        assert fields <= known, (rule.id, fields - known)  # else it says "n/a"
        values = {f: 7 for f in fields} | {"as_of": "2026-12-07", "band": "red"}
        values |= {"danger_text": "slow go-live", "quota_name": "api"}
        english = rules.render(rule.summary, values)
        chinese = alert_text("zh-CN", english)
        assert chinese != english and "Health score" not in chinese, (rule.id, chinese)
