"""Reading and writing the gateway's provisioned configuration through a
Target (in the app's state directory, `/data` on a board), with the
gateway's own schema (gateway/config.py): a document is
validated BEFORE anything is written, and written the way ConfigStore.save()
does on the gateway: the file in force is kept as `config.prev`, the new one
goes to `config.json.tmp` and is renamed over `config.json`, then a
leftover `trial` marker (an apply_config trial a reset cut short) is
removed, so the next boot does not roll the new config back."""

from __future__ import annotations

import json
from typing import Any

from firmware.tool.errors import Exit, ToolError
from firmware.tool.target import STATE_DIR, Target, in_state
from gateway.config import ConfigError, dumps, validate

FILE = in_state("config.json")
PREV = in_state("config.prev")
TRIAL = in_state("trial")


def parse(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(document, validated config); ToolError CONFIG_INVALID naming the field."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise ToolError(Exit.CONFIG_INVALID, "config_not_json") from None
    return doc, check(doc)


def check(doc: Any) -> dict[str, Any]:
    try:
        cfg: dict[str, Any] = validate(doc)
    except ConfigError as e:
        raise ToolError(Exit.CONFIG_INVALID, "config_field", path=e.path or "-",
                        detail=e.msg) from None
    return cfg


def read_doc(target: Target) -> dict[str, Any] | None:
    """The document on the gateway (None: not provisioned). A file that is
    not valid any more is still returned, for re-provisioning over it."""
    data = target.read(FILE)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def load(target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """(document, config) of a provisioned gateway; CONFIG_INVALID otherwise."""
    data = target.read(FILE)
    if data is None:
        raise ToolError(Exit.CONFIG_INVALID, "not_provisioned", where=target.where())
    return parse(data)


def save(target: Target, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate, then write atomically; returns the validated config."""
    cfg = check(doc)
    old = target.read(FILE)
    if old is not None:
        target.write_atomic(PREV, old)
    else:
        target.makedirs(STATE_DIR)  # a new board: the app has not made it yet
    target.write_atomic(FILE, dumps(doc))
    target.remove(TRIAL)
    return cfg


def next_version(doc: dict[str, Any] | None) -> int:
    v = doc.get("version") if doc else None
    return v + 1 if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 1


def birth_instruments(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The `instruments` of the next birth message (as gateway/runtime.py builds it)."""
    return [{"addr": i["addr"], "type": i["profile"], "kind": i["kind"]}
            for i in cfg["instruments"]]
