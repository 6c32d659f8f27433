"""Every page area adds its strings to one `STRINGS` table; a key added twice silently renames another page's text.

(Found when the billing and dunning pages both added "unit" and "none_yet": the later block re-labelled the
equipment pages' 单位 as 房号.) Parse dashboards/i18n.py and refuse a key that two blocks define differently.
"""

from __future__ import annotations

import ast
from pathlib import Path

from dashboards import i18n

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
