"""`ummc-gateway`: the technician's console script (pyproject [project.scripts]).

    ummc-gateway [--lang fr|ar|en] COMMAND (--port /dev/ttyUSB0 | --virtual DIR) [options]

Commands: flash, provision, pair, doctor, label. Messages come in French
(the default, for the field teams), Arabic or English: --lang, else
$UMMC_LANG, else $LANG (`ar_MA.UTF-8` -> Arabic). Every failure ends with
an exit code that says what failed (errors.Exit; docs/technician.md, "Exit
codes"), so a workshop script can act on it."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from firmware.tool import doctor, flash, label, pair, provision
from firmware.tool.console import Console
from firmware.tool.errors import Exit, ToolError
from firmware.tool.i18n import LANGS, Messages, choose_lang
from firmware.tool.target import BoardTarget, Target, VirtualTarget

PROG = "ummc-gateway"


class _UsageError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _lang_from_argv(argv: Sequence[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--lang="):
            return a.split("=", 1)[1]
    return None


def build_parser(m: Messages) -> argparse.ArgumentParser:
    t = m.t
    p = _Parser(prog=PROG, description=t("help_prog"))
    p.add_argument("--lang", choices=LANGS, help=t("help_lang"))
    where = _Parser(add_help=False)
    g = where.add_mutually_exclusive_group()
    g.add_argument("--port", help=t("help_port"))
    g.add_argument("--virtual", metavar="DIR", help=t("help_virtual"))
    where.add_argument("--lang", choices=LANGS, default=argparse.SUPPRESS, help=t("help_lang"))
    where.add_argument("--board-root", default="/", help=argparse.SUPPRESS)
    where.add_argument("--no-restart", action="store_true", help=t("help_no_restart"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    f = sub.add_parser("flash", parents=[where], help=t("help_flash"), description=t("help_flash"))
    f.add_argument("--bundle", required=True, type=Path, help=t("help_bundle"))
    f.add_argument("--trust", action="append", default=[], help=t("help_trust"))
    f.add_argument("--image", type=Path, help=t("help_image"))
    f.add_argument("--chip", default="esp32", choices=sorted(flash.OFFSETS), help=t("help_chip"))
    f.add_argument("--baud", type=int, default=flash.DEFAULT_BAUD, help=t("help_baud"))
    f.add_argument("--keep-data", action="store_true", help=t("help_keep_data"))

    pr = sub.add_parser("provision", parents=[where], help=t("help_provision"),
                        description=t("help_provision"))
    pr.add_argument("--unit", help=t("help_unit"))
    pr.add_argument("--gateway", help=t("help_gateway"))
    pr.add_argument("--network", choices=("wifi", "ppp", "ethernet", "host"),
                    help=t("help_network"))
    pr.add_argument("--wifi-ssid", help=t("help_wifi_ssid"))
    pr.add_argument("--wifi-password", help=t("help_wifi_password"))
    pr.add_argument("--apn", help=t("help_apn"))
    pr.add_argument("--apn-user", help=t("help_apn_user"))
    pr.add_argument("--apn-password", help=t("help_apn_password"))
    pr.add_argument("--broker", help=t("help_broker"))
    pr.add_argument("--ca", type=Path, help=t("help_ca_file"))
    pr.add_argument("--client-cert", type=Path, help=t("help_client_cert"))
    pr.add_argument("--client-key", type=Path, help=t("help_client_key"))
    pr.add_argument("--password", help=t("help_password"))
    pr.add_argument("--new-password", action="store_true", help=t("help_new_password"))
    pr.add_argument("--config-version", type=int, help=t("help_config_version"))
    pr.add_argument("--label-dir", type=Path, default=Path("labels"), help=t("help_label_dir"))
    pr.add_argument("--no-label", action="store_true", help=t("help_no_label"))
    pr.add_argument("--accounts-dir", type=Path, default=Path("accounts"),
                    help=t("help_accounts_dir"))
    pr.add_argument("--fleet-url", help=t("help_fleet_url"))
    pr.add_argument("--fleet-token", help=t("help_fleet_token"))

    pa = sub.add_parser("pair", parents=[where], help=t("help_pair"), description=t("help_pair"))
    pa.add_argument("--ble", help=t("help_ble"))
    pa.add_argument("--scan-seconds", type=float, default=8.0, help=t("help_scan_seconds"))
    pa.add_argument("--addr", help=t("help_addr"))
    pa.add_argument("--pin", help=t("help_pin"))
    pa.add_argument("--no-pin", action="store_true", help=t("help_no_pin"))
    pa.add_argument("--no-test", action="store_true", help=t("help_no_test"))
    pa.add_argument("--remove", metavar="ADDR", help=t("help_remove"))
    pa.add_argument("--serial", metavar="PORT", help=t("help_serial"))
    pa.add_argument("--profile", help=t("help_profile"))
    pa.add_argument("--name", help=t("help_name"))
    pa.add_argument("--baud", type=int, help=t("help_serial_baud"))

    d = sub.add_parser("doctor", parents=[where], help=t("help_doctor"),
                       description=t("help_doctor"))
    d.add_argument("--offline", action="store_true", help=t("help_offline"))
    d.add_argument("--timeout", type=float, default=5.0, help=t("help_timeout"))
    d.add_argument("--ca", help=t("help_ca"))
    d.add_argument("--max-clock-skew", type=float, default=120.0, help=t("help_skew"))

    lb = sub.add_parser("label", parents=[where], help=t("help_label"),
                        description=t("help_label"))
    lb.add_argument("--unit", help=t("help_unit"))
    lb.add_argument("--gateway", help=t("help_gateway"))
    lb.add_argument("--label-dir", type=Path, default=Path("labels"), help=t("help_label_dir"))
    return p


def make_target(args: argparse.Namespace) -> Target:
    if args.port:
        return BoardTarget(args.port, root=args.board_root)
    if args.virtual:
        return VirtualTarget(Path(args.virtual))
    raise ToolError(Exit.USAGE, "need_target")


def _dispatch(args: argparse.Namespace, console: Console, ble: pair.BleFactory | None) -> Exit:
    restart = not args.no_restart
    if args.command == "label" and args.unit and args.gateway:
        return _label(console, None, args)
    target = make_target(args)
    if args.command == "flash":
        return flash.run(console, target, bundle_path=args.bundle, trust=args.trust,
                         image=args.image, chip=args.chip, baud=args.baud,
                         keep_data=args.keep_data, restart=restart)
    if args.command == "provision":
        network = provision.network_section(args.network, args.wifi_ssid, args.wifi_password,
                                            args.apn, args.apn_user, args.apn_password)
        return provision.run(console, target, unit=args.unit, gateway=args.gateway,
                             network=network, broker=args.broker, password=args.password,
                             new_password=args.new_password, version=args.config_version,
                             label_dir=None if args.no_label else args.label_dir,
                             accounts_dir=args.accounts_dir, restart=restart, ca=args.ca,
                             client_cert=args.client_cert, client_key=args.client_key,
                             fleet_url=args.fleet_url, fleet_token=args.fleet_token)
    if args.command == "pair":
        factory = ble if ble is not None else (pair.ble_from_spec(args.ble) if args.ble else None)
        return pair.run(console, target, ble=factory, scan_seconds=args.scan_seconds,
                        addr=args.addr, pin=args.pin, no_pin=args.no_pin, test=not args.no_test,
                        remove=args.remove, serial=args.serial, profile=args.profile,
                        name=args.name, baud=args.baud, restart=restart)
    if args.command == "doctor":
        return doctor.run(console, target, offline=args.offline, timeout=args.timeout,
                          cafile=args.ca, max_skew_s=args.max_clock_skew, restart=restart)
    return _label(console, target, args)


def _label(console: Console, target: Target | None, args: argparse.Namespace) -> Exit:
    unit, gateway = args.unit, args.gateway
    if target is not None:
        from firmware.tool import configio

        target.open(hold=True)
        try:
            _, cfg = configio.load(target)
        finally:
            target.close(restart=not args.no_restart)
        unit, gateway = unit or cfg["unit"], gateway or cfg["gateway"]
    png = label.save_label(unit, gateway, args.label_dir)
    console.say("label_saved", path=str(png))
    console.raw(label.ascii_qr(unit, gateway))
    return Exit.OK


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
         out: TextIO | None = None, err: TextIO | None = None, inp: TextIO | None = None,
         ble: pair.BleFactory | None = None) -> int:
    """Run one command; returns the exit code. `ble` replaces the --ble
    transport (tests pass a bumble virtual controller beside simulators)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    out = out or sys.stdout
    err = err or sys.stderr
    for stream in (out, err):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    msgs = Messages(choose_lang(_lang_from_argv(argv), env))
    console = Console(msgs, out, err, inp or sys.stdin)
    parser = build_parser(msgs)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(out)
            return Exit.USAGE
        if args.command == "provision" and not args.fleet_token:
            args.fleet_token = env.get("UMMC_FLEET_TOKEN")  # kept off the command line
        code = _dispatch(args, console, ble)
    except _UsageError as e:
        console.error("usage", detail=e.detail, prog=PROG)
        return _exit(console, Exit.USAGE)
    except ToolError as e:
        console.error(e.key, **e.fields)
        return _exit(console, e.code)
    except KeyboardInterrupt:
        console.error("interrupted")
        return _exit(console, Exit.INTERRUPTED)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except Exception as e:  # a bug: say where, keep the code apart from real failures
        traceback.print_exc(file=err)
        console.error("internal", detail=f"{type(e).__name__}: {e}")
        return _exit(console, Exit.INTERNAL)
    return int(code)


def _exit(console: Console, code: Exit) -> int:
    console.err.write(console.t("exit_code", code=int(code)) + "\n")
    return int(code)

