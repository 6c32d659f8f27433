"""Every page area adds its strings to one `STRINGS` table; a key added twice silently renames another page's text.

(Found when the billing and dunning pages both added "unit" and "none_yet": the later block re-labelled the
equipment pages' 单位 as 房号.) Parse dashboards/i18n.py and refuse a key that two blocks define differently.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alarms import rounds
from alarms.access_pack import ACCESS_RULES
from alarms.const import SEVERITY_LABELS, alarm_state_label
from alarms.meter_pack import METER_RULES
from alarms.multipoint_pack import MULTIPOINT_RULES
from alarms.packs import DEFAULT_RULES
from alarms.round_defaults import DEFAULT_SCHEDULES
from alarms.stale import DEFAULT_STALE_RULES
from core import glossary
from dashboards import i18n
from tickets import const as tconst

SOURCE = Path(i18n.__file__).read_text(encoding="utf-8")


def _string_blocks() -> list[ast.Dict]:
    blocks: list[ast.Dict] = []
    for node in ast.parse(SOURCE).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "STRINGS":
            assert isinstance(node.value, ast.Dict)
            blocks.append(node.value)
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "STRINGS.update"
        ):
            arg = node.value.args[0]
            assert isinstance(arg, ast.Dict)
            blocks.append(arg)
    return blocks


def test_no_string_key_is_defined_twice() -> None:
    blocks = _string_blocks()
    assert len(blocks) >= 4  # the base table and the alarm/ticket, billing and dunning additions
    where: dict[str, int] = {}
    clashes = []
    for block in blocks:
        for key in block.keys:
            assert isinstance(key, ast.Constant)
            if key.value in where:
                clashes.append((key.value, where[key.value], key.lineno))
            where[key.value] = key.lineno
    assert clashes == []


def test_every_string_has_chinese_and_english() -> None:
    for key, (zh, en) in i18n.STRINGS.items():
        assert zh.strip(), key
        assert en.strip(), key


# --- the staff vocabulary (core/glossary.py, issue 14 §7) across every label table -------------------------------

LABEL_PACKAGES = ("core", "alarms", "tickets", "billing", "access", "accounts", "notifications", "storage")
LABEL_PACKAGES += ("dashboards",)


def _label_tables() -> dict[str, Mapping[Any, tuple[str, str]]]:
    """Every module-level (中文, English) table of the domains and the pages, found by shape, so a table a new page
    adds is checked without being listed here."""
    tables: dict[str, Mapping[Any, tuple[str, str]]] = {}
    for package_name in LABEL_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if _is_label_table(value):
                    tables.setdefault(f"{info.name}.{name}", value)
    return tables


def _is_label_table(value: object) -> bool:
    if not isinstance(value, Mapping) or not value:
        return False
    pairs = list(value.values())
    return all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs) and any(
        CJK.search(p[0]) for p in pairs
    )


CJK = re.compile(r"[\u4e00-\u9fff]")


def test_the_label_tables_are_found() -> None:
    tables = _label_tables()
    for name in (
        "alarms.const.SEVERITY_LABELS",
        "alarms.const.ALARM_STATE_LABELS",
        "alarms.rounds.STATUS_LABELS",
        "tickets.const.CATEGORY_LABELS",
        "tickets.const.SOURCE_LABELS",
        "dashboards.i18n.STRINGS",
        "dashboards.i18n.ROOM_KINDS",
        "dashboards.i18n.METRICS",
        "dashboards.tickets_view.EVENT_LABELS",
        "dashboards.operations.REASONS",
        "core.glossary.TICKET_CATEGORY",
    ):
        assert name in tables, name


def test_every_label_table_has_both_languages_and_the_staff_words() -> None:
    problems = []
    for table, entries in _label_tables().items():
        for key, (zh, en) in entries.items():
            if not zh.strip() or not en.strip():
                problems.append(f"{table}[{key}]: empty")
            if glossary.banned_in(zh):
                problems.append(f"{table}[{key}]: {zh!r} uses {glossary.banned_in(zh)}")
    assert problems == []


def test_the_domain_tables_take_their_words_from_the_glossary() -> None:
    assert dict(SEVERITY_LABELS) == glossary.SEVERITY
    assert dict(tconst.CATEGORY_LABELS) == glossary.TICKET_CATEGORY
    assert dict(tconst.SOURCE_LABELS) == glossary.TICKET_SOURCE
    assert dict(tconst.STATUS_LABELS) == glossary.TICKET_STATUS
    assert dict(tconst.CLOCK_KIND_LABELS) == glossary.CLOCK_KIND
    assert dict(rounds.STATUS_LABELS) == glossary.ROUND_STATUS
    assert i18n.ROOM_KINDS is glossary.ROOM_KIND
    assert i18n.METRICS is glossary.POINT_LABEL
    assert i18n.STRINGS["sev_critical"] == glossary.SEVERITY["critical"]


def test_alarm_states_read_by_how_an_alarm_ended() -> None:
    assert alarm_state_label("cleared", "condition_ended")[0] == "已恢复"
    assert alarm_state_label("cleared", "manual")[0] == "手动解除"
    assert alarm_state_label("cleared", None)[0] == "已恢复"
    assert alarm_state_label("active")[0] == "未确认"


def test_the_people_on_a_ticket_by_its_kind() -> None:
    for source in tconst.Source:
        for word in (
            tconst.reporter_word(source),
            tconst.assignee_word(source),
            tconst.reopen_word(source),
            tconst.reopen_count_word(source),
            tconst.reopened_event_word(source),
        ):
            assert word[0], source
            assert word[1], source
    assert tconst.reporter_word("complaint")[0] == "报事人"
    assert tconst.reporter_word("resident")[0] == "报修人"
    assert tconst.assignee_word("inspection")[0] == "处理人"
    assert tconst.assignee_word("resident")[0] == "维修人员"
    # 返修 is a repair redone; a reopened complaint or inspection is not a repair.
    assert "返修" not in tconst.reopen_word("complaint")[0] + tconst.reopen_count_word("complaint")[0]
    assert "返修" not in tconst.reopen_word("inspection")[0]
    assert tconst.reopen_word("resident")[0] == "返修"


def test_rule_titles_and_schedule_names_use_the_staff_words() -> None:
    specs = (*DEFAULT_RULES, *METER_RULES, *MULTIPOINT_RULES, *ACCESS_RULES, *DEFAULT_STALE_RULES)
    bad = [(s.code, s.title_zh) for s in specs if not s.title_zh or glossary.banned_in(s.title_zh)]
    assert bad == []
    names = [s.name_zh for specs_ in DEFAULT_SCHEDULES.values() for s in specs_]
    assert names
    assert [n for n in names if glossary.banned_in(n)] == []
    vacant = [s.title_zh for s in METER_RULES if s.params.get("anomaly") == "vacant_flow"]
    assert vacant
    assert all("水表走字" in t for t in vacant)
