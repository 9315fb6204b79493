"""Every message the tool can print exists in French, Arabic and English,
with the same fields, and the language is chosen as documented."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from firmware.tool.i18n import CATALOG, LANGS, Messages, choose_lang
from gateway.config import BLE_PROFILES, SERIAL_PROFILES

TOOL = Path(__file__).resolve().parents[2] / "firmware" / "tool"
# calls whose first string argument (after an Exit code) is a message key
_KEYED = {"say", "check", "error", "t", "progress", "ask", "ok", "info", "warn", "fail",
          "ToolError"}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _keys_in_code() -> set[str]:
    keys: set[str] = set()
    for path in TOOL.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name not in _KEYED:
                continue
            strings = [a.value for a in node.args
                       if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            strings += [k.value.value for k in node.keywords
                        if k.arg == "key" and isinstance(k.value, ast.Constant)
                        and isinstance(k.value.value, str)]
            keys.update(s for s in strings if s not in ("ok", "fail", "warn", "info"))
            if name == "check" and len(strings) > 1:
                keys.add(strings[1])
    return keys


def test_every_message_has_three_languages_with_the_same_fields() -> None:
    for key, texts in CATALOG.items():
        assert len(texts) == len(LANGS), key
        assert all(t.strip() for t in texts), key
        assert _fields(texts[0]) == _fields(texts[1]) == _fields(texts[2]), key


def test_every_key_the_code_uses_is_in_the_catalog() -> None:
    used = _keys_in_code()
    assert len(used) > 80
    assert used - set(CATALOG) == set()
    for profile in BLE_PROFILES + SERIAL_PROFILES:  # built as "profile_" + name
        assert "profile_" + profile in CATALOG
    for how in ("given", "generated", "kept"):
        assert "password_" + how in CATALOG


@pytest.mark.parametrize(("arg", "env", "lang"), [
    (None, {}, "fr"),
    (None, {"LANG": "C.UTF-8"}, "fr"),
    (None, {"LANG": "ar_MA.UTF-8"}, "ar"),
    (None, {"LANG": "en_GB.UTF-8"}, "en"),
    (None, {"UMMC_LANG": "ar", "LANG": "en_GB.UTF-8"}, "ar"),
    ("en", {"UMMC_LANG": "ar"}, "en"),
    (None, {"UMMC_LANG": "de", "LANG": "de_DE"}, "fr"),
])
def test_language_choice(arg: str | None, env: dict[str, str], lang: str) -> None:
    assert choose_lang(arg, env) == lang


def test_arabic_messages_are_arabic() -> None:
    m = Messages("ar")
    text = m.t("verdict_ok")
    assert any("\u0600" <= c <= "\u06ff" for c in text)
    assert m.t("exit_code", code=6) == "(رمز الخروج 6)"
