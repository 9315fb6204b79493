"""`ummc-gateway provision`: give a gateway its identity and where to report.

What it writes is one document of the gateway's own schema
(gateway/config.py), merged over the document already on the gateway so a
re-provisioning keeps its paired instruments and tuning: unit and gateway
ids, the network (Wi-Fi SSID and password, or the modem's APN, or the
host's network), the broker (`mqtt://host:port` or `mqtts://host:port`) and
the gateway's own broker credentials (username = gateway id). The version
goes up by one. It is validated BEFORE anything is written, then written
atomically (configio.save).

Credentials, two ways:
- from the fleet server (--fleet-url URL --fleet-token TOKEN, or
  $UMMC_FLEET_TOKEN): everything given is validated first, then the tool
  asks `POST /api/v1/gateways/<gateway>/credentials {unit}`; the server
  registers the gateway if it is new, issues a new password (a rotation when
  it had one), writes the broker's files and reloads it, and answers with
  the password and where gateways reach the broker (used unless --broker is
  given). Nothing is left for the administrator to do. A refusal ends with
  exit code 6 (the unit or gateway is wrong: 409, 422) or 7 (the fleet server
  unreachable, the token or its role refused, the broker not updated);
- offline: unless --password is given, the tool keeps the password already
  on the gateway (same gateway id) or generates a strong one, and writes an
  account file (mode 0600) in the shape `fleet_server register` and
  devharness/accounts.py use, and prints the two commands the fleet's
  administrator runs with it.

With TLS (`mqtts://`) the gateway needs the fleet broker's CA certificate
in `ca.pem` beside its config (firmware/board/ummc_main.py refuses to
connect without it): --ca FILE puts it there; a gateway that already has one
keeps it. --client-cert/--client-key add a TLS client certificate
(`client.pem`, `client.key`) for brokers that authenticate gateways that
way; the fleet server does not issue them yet, the fleet's PKI does.
These files are written (atomically) before the config that uses them.

Then it saves the QR label (label.py) and prints it."""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from firmware.tool import configio, label
from firmware.tool.console import Console
from firmware.tool.errors import Exit, ToolError
from firmware.tool.target import Target
from gateway.config import merge


def parse_broker(url: str) -> dict[str, Any]:
    """uplink fields from `mqtt://host[:port]` or `mqtts://host[:port]`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ToolError(Exit.CONFIG_INVALID, "bad_broker_url", url=url) from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/")\
            or parts.username or parts.query:
        raise ToolError(Exit.CONFIG_INVALID, "bad_broker_url", url=url)
    return {"broker_host": parts.hostname, "broker_port": port, "tls": parts.scheme == "mqtts"}


def network_section(mode: str | None, ssid: str | None, wifi_password: str | None,
                    apn: str | None, apn_user: str | None, apn_password: str | None
                    ) -> dict[str, Any] | None:
    """The `network` section asked for on the command line, or None (keep)."""
    if ssid is not None and apn is not None:
        raise ToolError(Exit.USAGE, "wifi_or_apn")
    if mode is None:
        mode = "wifi" if ssid is not None else "ppp" if apn is not None else None
    if mode is None:
        if wifi_password or apn_user or apn_password:
            raise ToolError(Exit.USAGE, "network_needs_mode")
        return None
    net: dict[str, Any] = {"mode": mode}
    if mode == "wifi":
        net.update(wifi_ssid=ssid, wifi_password=wifi_password)
    elif mode == "ppp":
        net.update(apn=apn, apn_user=apn_user, apn_password=apn_password)
    elif ssid is not None or apn is not None:
        raise ToolError(Exit.USAGE, "network_needs_mode")
    return {k: v for k, v in net.items() if v is not None}


def generate_password() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 bits


def build_doc(current: dict[str, Any] | None, *, unit: str | None, gateway: str | None,
              network: dict[str, Any] | None, broker: str | None, password: str | None,
              new_password: bool, version: int | None) -> tuple[dict[str, Any], str]:
    """(new document, what happened to the password: given/kept/generated/none)."""
    doc: dict[str, Any] = dict(current or {})
    if unit is not None:
        doc["unit"] = unit
    if gateway is None and unit is not None and not (current and current.get("unit") == unit):
        gateway = "gw-" + unit.lower()
    if gateway is not None:
        doc["gateway"] = gateway
    if network is not None:
        doc["network"] = network  # whole: no secret of another mode stays behind
    uplink: dict[str, Any] = {}
    if broker is not None:
        uplink.update(parse_broker(broker))
    old_up = (current or {}).get("uplink") or {}
    same_gateway = current is not None and current.get("gateway") == doc.get("gateway")
    if password is not None:
        uplink["password"], how = password, "given"
    elif not new_password and same_gateway and isinstance(old_up, dict) \
            and old_up.get("password"):
        how = "kept"
    elif doc.get("uplink") is not None or broker is not None:
        uplink["password"], how = generate_password(), "generated"
    else:
        how = "none"
    if uplink:
        uplink.setdefault("username", None)  # the gateway id
        doc["uplink"] = merge(old_up if isinstance(old_up, dict) else {}, uplink)
    doc["version"] = version if version is not None else configio.next_version(current)
    return doc, how


FLEET_TIMEOUT_S = 20
# Stands in for the broker while the rest of the configuration is checked,
# before the fleet server is asked (it gives the real one).
_STAND_IN_BROKER = "mqtt://fleet.invalid"


def _http_detail(body: bytes) -> str:
    """The API's error text: `detail` as a string, or each `loc: msg` of a 422."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200] or "-"
    if isinstance(detail, list):
        parts = []
        for e in detail:
            if isinstance(e, dict):
                loc = ".".join(str(x) for x in e.get("loc", ())[1:] or e.get("loc", ()))
                parts.append(f"{loc}: {e.get('msg')}")
        return "; ".join(parts) or "-"
    return str(detail)


def request_credentials(fleet_url: str, token: str, *, gateway: str,
                        unit: str) -> dict[str, Any]:
    """The fleet server's answer to POST /gateways/<gateway>/credentials
    (gateway, unit, username, password, broker {host, port, tls},
    registered, reloaded), or ToolError."""
    parts = urlsplit(fleet_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ToolError(Exit.USAGE, "bad_fleet_url", url=fleet_url)
    url = f"{fleet_url.rstrip('/')}/api/v1/gateways/{quote(gateway, safe='')}/credentials"
    req = urllib.request.Request(url, data=json.dumps({"unit": unit}).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json",
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=FLEET_TIMEOUT_S) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        detail = _http_detail(e.read())
        if e.code == 401:
            raise ToolError(Exit.BROKER_UNREACHABLE, "fleet_token_refused") from None
        if e.code == 403:
            raise ToolError(Exit.BROKER_UNREACHABLE, "fleet_forbidden", detail=detail) from None
        if e.code in (409, 422):
            raise ToolError(Exit.CONFIG_INVALID, "fleet_refused", detail=detail) from None
        raise ToolError(Exit.BROKER_UNREACHABLE, "fleet_error", status=e.code,
                        detail=detail) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ToolError(Exit.BROKER_UNREACHABLE, "fleet_unreachable", url=fleet_url,
                        detail=str(reason)) from None
    try:
        doc = json.loads(body)
        broker = doc["broker"]
        ok = (isinstance(doc["password"], str) and doc["gateway"] == gateway
              and isinstance(broker["host"], str) and isinstance(broker["port"], int)
              and isinstance(broker["tls"], bool))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ToolError(Exit.BROKER_UNREACHABLE, "fleet_error", status=200,
                        detail="unexpected answer")
    result: dict[str, Any] = doc
    return result


def broker_url(broker: dict[str, Any]) -> str:
    return f"{'mqtts' if broker['tls'] else 'mqtt'}://{broker['host']}:{broker['port']}"


def write_account_file(directory: Path, unit: str, gateway: str, password: str) -> Path:
    """`<dir>/<gateway>.account.json`, mode 0600, in the shape
    `python -m fleet_server register --accounts` reads (passwords ignored there)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{gateway}.account.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"gateways": [{"unit": unit, "gateway": gateway, "password": password}]}, f,
                  indent=1)
    os.chmod(path, 0o600)
    return path


def read_pem(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        raise ToolError(Exit.USAGE, "file_missing", path=str(path)) from None
    if b"-----BEGIN " not in data:
        raise ToolError(Exit.CONFIG_INVALID, "not_pem", path=str(path), what=what)
    return data


def run(console: Console, target: Target, *, unit: str | None, gateway: str | None,
        network: dict[str, Any] | None, broker: str | None, password: str | None,
        new_password: bool, version: int | None, label_dir: Path | None,
        accounts_dir: Path, restart: bool, ca: Path | None = None,
        client_cert: Path | None = None, client_key: Path | None = None,
        fleet_url: str | None = None, fleet_token: str | None = None) -> Exit:
    if (client_cert is None) != (client_key is None):
        raise ToolError(Exit.USAGE, "cert_and_key")
    if fleet_url is not None:
        if password is not None:
            raise ToolError(Exit.USAGE, "fleet_or_password")
        if not fleet_token:
            raise ToolError(Exit.USAGE, "fleet_needs_token")
    pems = {"ca.pem": read_pem(ca, "CA"), "client.pem": read_pem(client_cert, "certificate"),
            "client.key": read_pem(client_key, "key")}
    issued: dict[str, Any] | None = None
    target.open(hold=True)
    try:
        current = configio.read_doc(target)
        if fleet_url is not None and fleet_token:
            # Everything else is checked before the fleet server issues anything.
            trial, _ = build_doc(current, unit=unit, gateway=gateway, network=network,
                                 broker=broker or _STAND_IN_BROKER,
                                 password=generate_password(), new_password=True,
                                 version=version)
            first = configio.check(trial)
            issued = request_credentials(fleet_url, fleet_token, gateway=first["gateway"],
                                         unit=first["unit"])
            broker = broker or broker_url(issued["broker"])
            password = issued["password"]
        doc, how = build_doc(current, unit=unit, gateway=gateway, network=network,
                             broker=broker, password=password, new_password=new_password,
                             version=version)
        if issued is not None:
            how = "issued"
        cfg = configio.check(doc)  # nothing is written before this passes
        if cfg["uplink"]["tls"] and pems["ca.pem"] is None and target.read("ca.pem") is None:
            raise ToolError(Exit.CONFIG_INVALID, "tls_needs_ca")
        for name, data in pems.items():
            if data is not None:
                target.write_atomic(name, data)
        configio.save(target, doc)
    finally:
        target.close(restart=restart)
    up = cfg["uplink"]
    net = cfg["network"]
    console.check("ok", "provisioned", unit=cfg["unit"], gateway=cfg["gateway"],
                  version=cfg["version"], where=target.where())
    console.say("provision_network", mode=net["mode"],
                detail=net.get("wifi_ssid") or net.get("apn") or "-")
    console.say("provision_broker", host=up["broker_host"], port=up["broker_port"],
                tls="TLS" if up["tls"] else console.t("no_tls"))
    if pems["ca.pem"] is not None:
        console.say("ca_written")
    if pems["client.pem"] is not None:
        console.say("client_cert_written")
    if how in ("given", "generated"):
        path = write_account_file(accounts_dir, cfg["unit"], cfg["gateway"], up["password"])
        console.say("password_" + how)
        console.say("account_file", path=str(path))
        console.raw(f"    python -m fleet_server register --accounts {path}")
        console.raw(f"    mosquitto_passwd /etc/mosquitto/passwd {cfg['gateway']}")
    elif how == "kept":
        console.say("password_kept")
    elif issued is not None:
        console.say("password_issued")
        if issued.get("registered"):
            console.say("fleet_registered", gateway=cfg["gateway"], unit=cfg["unit"])
        if not issued.get("reloaded", True):
            console.say("fleet_not_reloaded")
    if label_dir is not None:
        png = label.save_label(cfg["unit"], cfg["gateway"], label_dir)
        console.say("label_saved", path=str(png))
        console.raw(label.ascii_qr(cfg["unit"], cfg["gateway"]))
    if target.kind == "virtual":
        console.say("virtual_restart_hint")
    elif restart:
        console.say("restarting")
    return Exit.OK
