"""Print the README's configuration table from ``Settings`` (run after adding a setting).

python scripts/settings_table.py > /tmp/table.md
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import SecretStr

from shared.config import Settings


def table() -> str:
    """The table's lines (tests/unit/test_readme_settings.py holds the README to it)."""
    lines = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        shown = "(empty)" if default in ("", None) else f"`{default}`"
        if isinstance(default, timedelta):  # as the environment variable takes it
            shown = f"`PT{int(default.total_seconds() // 3600)}H`"
        extra = field.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
            shown = extra["shown_default"]  # a default the code works out (auto)
        lines.append(
            f"| `{name}` | `HEALTHWATCH_{name.upper()}` | {shown} | {field.description or ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
