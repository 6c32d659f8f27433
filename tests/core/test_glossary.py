"""The staff vocabulary (core/glossary.py): every entry has both languages and uses the staff's words (issue 14 §7)."""

from __future__ import annotations

import re

import pytest

from core import glossary

CJK = re.compile(r"[\u4e00-\u9fff]")


def all_pairs() -> list[tuple[str, glossary.Pair]]:
    pairs = [(f"{table}[{key}]", pair) for table, t in glossary.every_table().items() for key, pair in t.items()]
    return pairs + list(glossary.every_term().items())


def test_the_glossary_is_not_empty() -> None:
    names = {name for name, _ in all_pairs()}
    assert len(names) > 150
    for term in ("ALARM", "REPAIR_REPORTER", "COMPLAINT_REPORTER", "HANDLER", "REVERSE_REGISTER", "METER_FLAGS"):
        assert term in names


@pytest.mark.parametrize(("name", "pair"), all_pairs())
def test_every_entry_has_chinese_and_english(name: str, pair: glossary.Pair) -> None:
    zh, en = pair
    assert zh.strip(), name
    assert CJK.search(zh), name
    assert en.strip(), name
    assert not CJK.search(en), name


@pytest.mark.parametrize(("name", "pair"), all_pairs())
def test_no_entry_uses_a_word_the_staff_do_not(name: str, pair: glossary.Pair) -> None:
    assert glossary.banned_in(pair[0]) == [], name


def test_the_words_the_issue_asks_for() -> None:
    assert [glossary.SEVERITY[s][0] for s in ("warning", "alarm", "critical")] == ["预警", "报警", "紧急"]
    assert glossary.ROOM_KIND["heat_station"][0] == "热力站"
    assert glossary.TICKET_CATEGORY["electrical"][0] == "电气"
    assert glossary.TICKET_CATEGORY["meter"][0] == "水电表"
    assert glossary.TICKET_SOURCE["manual"][0] == "人工录入"
    assert (glossary.ROUND_STATUS["missed"][0], glossary.ROUND_STATUS["done"][0]) == ("未巡检", "人工巡检完成")
    assert (glossary.CLEARED_BY["condition_ended"][0], glossary.CLEARED_BY["manual"][0]) == ("已恢复", "手动解除")
    assert glossary.VACANT_METER_RUNNING[0] == "空置房水表走字"
    assert glossary.POINT_LABEL["room_temp_c"][0] == "室温"
    assert (glossary.ALARM_LIMIT[0], glossary.METER_FLAGS[0], glossary.REVERSE_REGISTER[0]) == (
        "报警限值",
        "状态标志",
        "反向有功示数",
    )


def test_banned_words_are_found() -> None:
    assert glossary.banned_in("告警列表") == ["告警"]
    assert glossary.banned_in("空置房走水") == ["走水"]
    assert glossary.banned_in("换热站") == ["换热站"]
    assert glossary.banned_in("严重") == ["严重"]  # a severity needs its noun
    assert glossary.banned_in("严重漏水") == []
    assert glossary.banned_in("热力站 2小时巡检") == []
