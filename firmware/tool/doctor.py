"""`ummc-gateway doctor`: one screen that says whether a gateway is fit to go.

It reads what the gateway keeps on flash in one pass (Target.survey():
config, boot record, OTA state and slots, journal, clock, free flash) and
tries the broker from this computer with the gateway's own credentials
(TCP connect + MQTT CONNECT through the gateway's own client,
gateway.mqtt.MQTTClient, clean session and a client id of its own so the
gateway's persistent session is not touched). Each check prints one line:
✔ good, ✘ must be fixed, ! worth a look, · information; the last line is
the verdict. The exit code is the first failure in this order: config
invalid (6), broker unreachable (7), anything else (10).

Nothing is written on the gateway; the journal is read from a copy (virtual)
or by a read-only walk on the board (boardscripts.survey). Readings' values
are never read, only their instrument address and receive time."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from firmware.tool import configio
from firmware.tool.console import Console
from firmware.tool.errors import Exit, ToolError
from firmware.tool.target import Target

RECENT_CRASH_MS = 7 * 86400 * 1000
OLD_PENDING_MS = 24 * 3600 * 1000
JOURNAL_FULL_SHARE = 0.8


def human_age(ms: int, console: Console) -> str:
    s = max(0, ms // 1000)
    if s < 90:
        return console.t("age_s", n=s)
    if s < 5400:
        return console.t("age_min", n=s // 60)
    if s < 172800:
        return console.t("age_h", n=s // 3600)
    return console.t("age_d", n=s // 86400)


def when(ts: Any) -> str:
    if not isinstance(ts, int):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts / 1000))


def tls_context(cafile: str | None, files: dict[str, Any]) -> ssl.SSLContext:
    """As the gateway builds it: its ca.pem (unless --ca), its client
    certificate when it has one."""
    if cafile is not None:
        ctx = ssl.create_default_context(cafile=cafile)
    elif files.get("ca.pem"):
        ctx = ssl.create_default_context(cadata=files["ca.pem"])
    else:
        ctx = ssl.create_default_context()
    if files.get("client.pem") and files.get("client.key"):
        with tempfile.TemporaryDirectory(prefix="ummc-doctor-") as tmp:
            cert, key = Path(tmp) / "client.pem", Path(tmp) / "client.key"
            cert.write_text(files["client.pem"])
            fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(files["client.key"])
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def probe_broker(cfg: dict[str, Any], timeout: float, ctx: ssl.SSLContext | None
                       ) -> tuple[str, str]:
    """("ok", "") or ("unreachable" | "refused", detail)."""
    from gateway.mqtt import MQTTClient
    from gateway.mqtt.client import ConnectionLost, ConnectRefused

    up = cfg["uplink"]
    client = MQTTClient(cfg["gateway"] + "-doctor", up["broker_host"], up["broker_port"],
                        username=up["username"], password=up["password"], keepalive=30,
                        clean_session=True, ssl=ctx)
    try:
        await client.connect(timeout=timeout)
    except ConnectRefused as e:
        return "refused", e.reason
    except (ConnectionLost, OSError, ssl.SSLError) as e:
        return "unreachable", str(e)[:160]
    except TimeoutError:
        return "unreachable", "no CONNACK within %.0f s" % timeout
    await client.disconnect()
    return "ok", ""


class Verdict:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.failures: list[Exit] = []

    def ok(self, key: str, **kw: Any) -> None:
        self.console.check("ok", key, **kw)

    def info(self, key: str, **kw: Any) -> None:
        self.console.check("info", key, **kw)

    def warn(self, key: str, **kw: Any) -> None:
        self.console.check("warn", key, **kw)

    def fail(self, code: Exit, key: str, **kw: Any) -> None:
        self.console.check("fail", key, **kw)
        self.failures.append(code)

    def code(self) -> Exit:
        for c in (Exit.CONFIG_INVALID, Exit.BROKER_UNREACHABLE, Exit.NEEDS_ATTENTION):
            if c in self.failures:
                return c
        return Exit.OK


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return ValueError


def run(console: Console, target: Target, *, offline: bool, timeout: float,
        cafile: str | None, max_skew_s: float, restart: bool) -> Exit:
    target.open(hold=True)
    try:
        s = target.survey()
    finally:
        target.close(restart=restart)
    v = Verdict(console)
    host_ms = int(time.time() * 1000)
    now = s["now_ms"] if isinstance(s.get("now_ms"), int) else host_ms
    files = s.get("files") or {}

    console.say("doctor_title", where=target.where())
    if s.get("micropython"):
        v.ok("found_board", platform=s.get("platform"), mpy=s["micropython"])
    else:
        v.ok("found_virtual", where=target.where())
    if getattr(target, "marker_found", False):
        v.warn("watchdog_was_off")

    _firmware(v, s, target)
    cfg = _config(v, s, files, target)
    _clock(v, s, now, host_ms, max_skew_s, target)
    if cfg is not None:
        if offline:
            v.info("broker_skipped")
        else:
            try:
                ctx = tls_context(cafile, files) if cfg["uplink"]["tls"] else None
                status, detail = asyncio.run(probe_broker(cfg, timeout, ctx))
            except (OSError, ssl.SSLError, ValueError) as e:  # a CA or key that does not load
                status, detail = "unreachable", f"TLS: {e}"[:160]
            up = cfg["uplink"]
            where = f"{up['broker_host']}:{up['broker_port']}"
            if status == "ok":
                v.ok("broker_ok", broker=where, user=up["username"])
            elif status == "refused":
                v.fail(Exit.BROKER_UNREACHABLE, "broker_refused", broker=where, detail=detail)
            else:
                v.fail(Exit.BROKER_UNREACHABLE, "broker_unreachable", broker=where,
                       detail=detail)
    _journal(v, s, cfg, now)
    _instruments(v, s, cfg, files, now)
    _boot(v, files, now)
    if isinstance(s.get("flash_free"), int) and target.kind == "board":
        v.info("flash_free", kb=s["flash_free"] // 1024)

    code = v.code()
    n = len(v.failures)
    if code == Exit.OK:
        console.raw("")
        console.check("ok", "verdict_ok")
    else:
        console.raw("")
        console.check("fail", "verdict_fail", n=n, code=int(code))
    return code


def _firmware(v: Verdict, s: dict[str, Any], target: Target) -> None:
    slots = s.get("slots") or {}
    st = _json((s.get("files") or {}).get("ota_state.json"))
    active = st.get("active") if isinstance(st, dict) else None
    if active not in ("a", "b") or not slots.get(active):
        active = next((k for k in ("a", "b") if slots.get(k)), None)
    if active is None:
        if target.kind == "virtual":
            v.info("fw_none_virtual")
        else:
            v.fail(Exit.NEEDS_ATTENTION, "fw_none")
        return
    v.ok("fw_version", version=slots[active], slot="app_" + active)
    if isinstance(st, dict):
        pending = st.get("pending")
        if pending in ("a", "b"):
            v.warn("fw_pending", version=slots.get(pending) or "?", tries=st.get("tries", 0))
        last = st.get("last")
        if isinstance(last, dict) and last.get("event") == "rolled_back":
            v.warn("fw_rolled_back", version=last.get("version") or "?",
                   reason=last.get("reason") or "?")


def _config(v: Verdict, s: dict[str, Any], files: dict[str, Any], target: Target
            ) -> dict[str, Any] | None:
    text = files.get("config.json")
    if text is None:
        v.fail(Exit.CONFIG_INVALID, "not_provisioned", where=target.where())
        return None
    try:
        _, cfg = configio.parse(text.encode())
    except ToolError as e:
        v.fail(Exit.CONFIG_INVALID, e.key, **e.fields)
        return None
    v.ok("config_ok", version=cfg["version"], unit=cfg["unit"], gateway=cfg["gateway"],
         mode=cfg["network"]["mode"])
    if cfg["uplink"]["tls"] and not files.get("ca.pem"):
        v.fail(Exit.CONFIG_INVALID, "ca_missing")
    if s.get("trial"):
        v.warn("config_trial")
    return cfg


def _clock(v: Verdict, s: dict[str, Any], now: int, host_ms: int, max_skew_s: float,
           target: Target) -> None:
    if target.kind == "virtual":
        v.info("clock_host")
        return
    skew_ms = now - host_ms
    if abs(skew_ms) <= max_skew_s * 1000:
        v.ok("clock_ok", s=abs(skew_ms) // 1000)
    else:
        v.warn("clock_off", off=human_age(abs(skew_ms), v.console),
               dir=v.console.t("ahead" if skew_ms > 0 else "behind"))


def _journal(v: Verdict, s: dict[str, Any], cfg: dict[str, Any] | None, now: int) -> None:
    j = s.get("journal")
    if not j:
        v.info("journal_none")
        return
    cap = cfg["journal"]["capacity_bytes"] if cfg else 2000000
    kb = j["bytes"] // 1024
    if j["depth"] == 0:
        v.ok("journal_empty", jid=j.get("jid") or "-")
    else:
        age = now - j["oldest_rtime"] if isinstance(j.get("oldest_rtime"), int) else None
        v.ok("journal_depth", n=j["depth"], kb=kb,
             age=human_age(age, v.console) if age is not None else "?")
        if age is not None and age > OLD_PENDING_MS:
            v.warn("journal_old", age=human_age(age, v.console))
    if j["bytes"] > cap * JOURNAL_FULL_SHARE:
        v.fail(Exit.NEEDS_ATTENTION, "journal_full", kb=kb, cap=cap // 1024)
    if j.get("damaged"):
        v.warn("journal_damaged", n=j["damaged"])


def _instruments(v: Verdict, s: dict[str, Any], cfg: dict[str, Any] | None,
                 files: dict[str, Any], now: int) -> None:
    if cfg is None:
        return
    if not cfg["instruments"]:
        v.warn("no_instruments")
        return
    seen = _json(files.get("seen.json"))
    seen = seen if isinstance(seen, dict) else {}
    pending = ((s.get("journal") or {}).get("instruments")) or {}
    c = v.console
    for inst in cfg["instruments"]:
        addr = inst["addr"]
        what = c.t("profile_" + inst["profile"])
        last = None
        entry = seen.get(addr)
        if isinstance(entry, dict) and isinstance(entry.get("last_seen"), int):
            last = entry["last_seen"]
        p = pending.get(addr) or {}
        if isinstance(p.get("last_rtime"), int) and (last is None or p["last_rtime"] > last):
            last = p["last_rtime"]
        if last is None:
            v.info("inst_never", addr=addr, what=what)
        else:
            v.info("inst_seen", addr=addr, what=what, age=human_age(now - last, c),
                   n=p.get("pending", 0))


def _boot(v: Verdict, files: dict[str, Any], now: int) -> None:
    boot = _json(files.get("boot.json"))
    if boot is None:
        v.info("boot_never")
        return
    if not isinstance(boot, dict):
        v.warn("boot_unreadable")
        return
    crash = boot.get("last_crash")
    v.info("boot_counts", boots=boot.get("boots", 0), unexpected=boot.get("unexpected", 0))
    if isinstance(crash, dict):
        at = crash.get("at")
        recent = boot.get("crash_pending") or (isinstance(at, int) and now - at < RECENT_CRASH_MS)
        args = {"at": when(at), "where": str(crash.get("where", "?"))[:48],
                "detail": str(crash.get("detail", ""))[:160]}
        if recent:
            v.fail(Exit.NEEDS_ATTENTION, "crash_recent", **args)
        else:
            v.info("crash_old", **args)
    else:
        v.ok("no_crash")
