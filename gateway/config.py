# Gateway configuration: one schema, defaults in code, per-unit values in one
# provisioned file, `config.json` in the gateway's state directory
# (docs/gateway.md, "Configuration"). The app reads it once at boot; the
# `apply_config` command (gateway/commands.py) changes it through a trial.
#
# Theory of operation
# - SCHEMA is declarative: a field is a tuple (type, default, flags, a, b);
#   `a`/`b` are the range of an INT/NUM, the length bounds of a STR, the
#   choices of an ENUM, the sub-schema and item limit of a SECTION/LIST.
# - validate(doc) returns a full config (defaults filled, derived values set)
#   or raises ConfigError naming the path of the first bad field
#   (`uplink.heartbeat_s`, `instruments[2].addr`). Unknown keys are errors: a
#   typo must not be silently ignored. Messages never echo values (secrets).
# - The file holds a *document*: what the technician provisioned plus changes
#   applied by command, without the defaults, so a firmware update that
#   changes a default reaches every unit that never set the field.
#   validate(validate(doc)) == validate(doc).
# - ConfigStore writes files atomically (write `<name>.tmp`, fsync, rename),
#   keeps the previous file as `config.prev`, and runs trials: begin_trial()
#   copies config.json to config.prev, writes the `trial` marker, then the
#   new config.json; confirm() removes the marker; rollback() copies
#   config.prev back, then removes the marker. A marker found by load() is a
#   trial that never got confirmed (crash loop, power cut): load() rolls back
#   by itself and says so in `rolled_back_at_boot`. A power cut between any
#   two file operations leaves a loadable config (tests/gateway/test_config.py).
import json
import os

from device_drivers.quirks import QUIRKS
from gateway.fsutil import exists as _exists
from gateway.fsutil import sync

TYPE_CHECKING = False  # mypy takes it as True: for the type comments only
if TYPE_CHECKING:
    from typing import Any  # noqa: F401

try:
    from micropython import const
except ImportError:

    def const(x):  # type: (int) -> int
        return x


# field types (const: the schema's tuples are folded into constants)
INT = const(0)
NUM = const(1)
STR = const(2)
BOOL = const(3)
ENUM = const(4)
STRS = const(5)  # list of strings: a = allowed names or None, b = max items
SECTION = const(6)  # a = sub-schema
LIST = const(7)  # list of sections: a = item schema, b = max items
ID = const(8)  # [A-Za-z0-9_-], length a..b
PIN = const(9)  # 6 decimal digits, as a string
OBJ = const(10)  # any JSON object, checked elsewhere

# flags
REQ = const(1)
NULL = const(2)
SECRET = const(4)

MAXINT = 0x3FFFFFFF  # a MicroPython small int

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_HEX = "0123456789ABCDEF"

BLE_PROFILES = ("blood_pressure", "glucose", "thermometer", "pulse_oximeter", "weight_scale")
SERIAL_PROFILES = ("ecg_cyton", "onetouch", "astm")
_SERIAL_BAUD = (115200, 9600, 9600)  # default baud of each serial profile

UPLINK = {
    "broker_host": (STR, None, REQ, 1, 253),
    "broker_port": (INT, None, NULL, 1, 65535),  # null: 8883 with TLS, 1883 without
    "tls": (BOOL, True, 0, None, None),
    "username": (STR, None, NULL, 1, 64),  # null: the gateway id
    "password": (STR, None, NULL | SECRET, 1, 128),
    "keepalive_s": (INT, 60, 0, 10, 3600),
    "heartbeat_s": (INT, 60, 0, 10, 3600),
    "window": (INT, 4, 0, 1, 16),
    "resend_after_s": (INT, 30, 0, 5, 3600),
    "backoff_min_s": (INT, 1, 0, 1, 3600),
    "backoff_max_s": (INT, 60, 0, 1, 86400),
}
NETWORK = {
    "mode": (ENUM, None, REQ, ("wifi", "ppp", "ethernet", "host"), None),
    "wifi_ssid": (STR, None, NULL, 1, 32),  # required in mode wifi
    "wifi_password": (STR, None, NULL | SECRET, 8, 63),
    "apn": (STR, None, NULL, 1, 100),  # required in mode ppp
    "apn_user": (STR, None, NULL, 1, 64),
    "apn_password": (STR, None, NULL | SECRET, 1, 64),
}
JOURNAL = {
    "capacity_bytes": (INT, 2000000, 0, 65536, 1000000000),
    "health_share": (NUM, 0.5, 0, 0, 1),
}
CLOCK = {
    "ntp_server": (STR, "pool.ntp.org", NULL, 1, 253),  # null: server time from acks only
    "slew_ms": (INT, 2000, 0, 0, 600000),
}
INSTRUMENT = {
    "addr": (STR, None, REQ, 1, 64),  # BLE address, or the serial instrument's name
    "kind": (ENUM, None, REQ, ("ble", "serial"), None),
    "profile": (ENUM, None, REQ, BLE_PROFILES + SERIAL_PROFILES, None),
    "name": (STR, None, NULL, 1, 32),
    "passkey": (PIN, None, NULL | SECRET, None, None),  # BLE only
    "port": (STR, None, NULL, 1, 64),  # serial only, required there
    "baud": (INT, None, NULL, 300, 1000000),  # serial only; null: the profile's
    "quirks": (STRS, (), 0, QUIRKS, 8),
    "set_clock": (BOOL, True, 0, None, None),
}
INDICATOR = {
    "buzzer": (BOOL, True, 0, None, None),
    "brightness": (INT, 50, 0, 0, 100),
}
SCHEMA = {
    "version": (INT, None, REQ, 1, MAXINT),
    "unit": (ID, None, REQ, 1, 32),
    "gateway": (ID, None, REQ, 1, 32),
    "uplink": (SECTION, None, 0, UPLINK, None),
    "network": (SECTION, None, 0, NETWORK, None),
    "journal": (SECTION, None, 0, JOURNAL, None),
    "clock": (SECTION, None, 0, CLOCK, None),
    "instruments": (LIST, (), 0, INSTRUMENT, 16),
    "indicator": (SECTION, None, 0, INDICATOR, None),
}

MASK = "***"


class ConfigError(ValueError):
    """A bad configuration; `path` names the field ("" for the whole file)."""

    def __init__(self, msg, path=""):
        super().__init__("%s: %s" % (path, msg) if path else msg)
        self.msg = msg
        self.path = path


def _join(path, name):
    return path + "." + name if path else name


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_id(s, lo=1, hi=32, extra="_-"):
    if not isinstance(s, str) or not lo <= len(s) <= hi:
        return False
    for c in s:
        if c not in _ALNUM and c not in extra:
            return False
    return True


def _is_ble_addr(a):
    if len(a) != 17:
        return False
    for i in range(17):
        if (a[i] != ":") if i % 3 == 2 else (a[i] not in _HEX):
            return False
    return True


def _value(v, spec, p):
    t, _, flags, a, b = spec
    if v is None:
        if flags & NULL:
            return None
        raise ConfigError("must not be null", p)
    if t == INT or t == NUM:
        if not (is_int(v) or (t == NUM and isinstance(v, float))):
            raise ConfigError("must be an integer" if t == INT else "must be a number", p)
        if not a <= v <= b:
            raise ConfigError("must be %s to %s" % (a, b), p)
    elif t == STR:
        if not isinstance(v, str):
            raise ConfigError("must be a string", p)
        if not a <= len(v) <= b:
            raise ConfigError("must be %d to %d characters" % (a, b), p)
    elif t == ID:
        if not is_id(v, a, b):
            raise ConfigError("must be %d to %d characters [A-Za-z0-9_-]" % (a, b), p)
    elif t == PIN:
        if not (isinstance(v, str) and len(v) == 6 and all(c in _HEX[:10] for c in v)):
            raise ConfigError("must be a string of 6 digits", p)
    elif t == BOOL:
        if not isinstance(v, bool):
            raise ConfigError("must be true or false", p)
    elif t == ENUM:
        if v not in a:
            raise ConfigError("must be one of " + ", ".join(a), p)
    elif t == SECTION or t == OBJ:
        if not isinstance(v, dict):
            raise ConfigError("must be an object", p)
        return check(v, a, p) if t == SECTION else v
    elif t == STRS or t == LIST:
        if not isinstance(v, list):
            raise ConfigError("must be a list", p)
        if len(v) > b:
            raise ConfigError("at most %d items" % b, p)
        out = []
        for i in range(len(v)):
            ip = "%s[%d]" % (p, i)
            if t == LIST:
                out.append(_value(v[i], (SECTION, None, 0, a, None), ip))
            elif not isinstance(v[i], str) or not 0 < len(v[i]) <= 64:
                raise ConfigError("must be a string of 1 to 64 characters", ip)
            elif a is not None and v[i] not in a:
                raise ConfigError("unknown name; known: " + ", ".join(sorted(a)), ip)
            else:
                out.append(v[i])
        return out
    return v


def check(obj, schema, path=""):
    """obj checked against a schema, defaults filled (a new dict)."""
    if not isinstance(obj, dict):
        raise ConfigError("must be an object", path)
    for k in obj:
        if k not in schema:
            raise ConfigError("unknown field", _join(path, str(k)))
    out = {}
    for name, spec in schema.items():
        p = _join(path, name)
        if name in obj:
            out[name] = _value(obj[name], spec, p)
        elif spec[2] & REQ:
            raise ConfigError("required", p)
        elif spec[0] == SECTION:
            out[name] = check({}, spec[3], p)
        else:
            d = spec[1]
            out[name] = list(d) if isinstance(d, tuple) else d
    return out


def validate(doc):
    """The full configuration of a document, or ConfigError(msg, path)."""
    cfg = check(doc, SCHEMA)
    up = cfg["uplink"]
    if up["broker_port"] is None:
        up["broker_port"] = 8883 if up["tls"] else 1883
    if up["username"] is None:
        up["username"] = cfg["gateway"]
    if up["backoff_max_s"] < up["backoff_min_s"]:
        raise ConfigError("must not be below backoff_min_s", "uplink.backoff_max_s")
    net = cfg["network"]
    if net["mode"] == "wifi" and net["wifi_ssid"] is None:
        raise ConfigError("required when mode is wifi", "network.wifi_ssid")
    if net["mode"] == "ppp" and net["apn"] is None:
        raise ConfigError("required when mode is ppp", "network.apn")
    seen = {}  # type: dict
    for i, it in enumerate(cfg["instruments"]):
        p = "instruments[%d]." % i
        if it["kind"] == "ble":
            it["addr"] = it["addr"].upper()
            if not _is_ble_addr(it["addr"]):
                raise ConfigError("must be a BLE address like C4:7C:8D:6A:11:02", p + "addr")
            if it["profile"] not in BLE_PROFILES:
                raise ConfigError("not a BLE profile", p + "profile")
            for k in ("port", "baud"):
                if it[k] is not None:
                    raise ConfigError("only for serial instruments", p + k)
        else:
            if it["profile"] not in SERIAL_PROFILES:
                raise ConfigError("not a serial profile", p + "profile")
            if it["passkey"] is not None:
                raise ConfigError("only for BLE instruments", p + "passkey")
            if it["port"] is None:
                raise ConfigError("required for serial instruments", p + "port")
            if it["baud"] is None:
                it["baud"] = _SERIAL_BAUD[SERIAL_PROFILES.index(it["profile"])]
        if it["addr"] in seen:
            raise ConfigError("duplicate address (also instruments[%d])" % seen[it["addr"]],
                              p + "addr")
        seen[it["addr"]] = i
    return cfg


def merge(base, partial):
    """`partial` over `base`: objects merged recursively, anything else
    (lists included) replaced. Neither argument is changed."""
    if not isinstance(base, dict) or not isinstance(partial, dict):
        return partial
    out = dict(base)
    for k, v in partial.items():
        out[k] = merge(out.get(k), v) if k in out else v
    return out


def redacted(cfg, schema=SCHEMA):
    """A copy for logs and diagnostics: secrets (and unknown keys, which may be
    misspelt secrets) masked; a secret that is not set stays null."""
    out = {}  # type: dict
    for k, v in cfg.items():
        spec = schema.get(k)
        if spec is None or (spec[2] & SECRET and v is not None):
            out[k] = MASK
        elif spec[0] == SECTION and isinstance(v, dict):
            out[k] = redacted(v, spec[3])
        elif spec[0] == LIST and isinstance(v, list):
            out[k] = [redacted(i, spec[3]) if isinstance(i, dict) else i for i in v]
        else:
            out[k] = v
    return out


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def write_file(path, parts):
    """Write the byte strings `parts` to path and push them to flash."""
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)
        sync(f)


class ConfigStore:
    FILE = "config.json"
    PREV = "config.prev"
    TRIAL = "trial"

    def __init__(self, root):
        self.root = root
        self.doc = None  # type: Any  # the document on file (no defaults)
        self.cfg = None  # type: Any  # the validated config in force
        self.trial = None  # type: Any  # {"previous": v, "version": v} while a trial runs
        self.rolled_back_at_boot = None  # type: Any  # that marker, when load() undid a trial

    # --- file steps (a test subclass cuts the power before any of them) ------
    def _path(self, name):
        return self.root + "/" + name

    def _write(self, name, data):
        write_file(self._path(name), (data,))

    def _rename(self, src, dst):
        os.rename(self._path(src), self._path(dst))

    def _remove(self, name):
        os.remove(self._path(name))

    def _read(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def _replace(self, name, data):
        self._write(name + ".tmp", data)
        self._rename(name + ".tmp", name)

    # --- loading ---------------------------------------------------------------
    def _parse(self, data, name):
        try:
            doc = json.loads(data)
        except ValueError:
            raise ConfigError("%s/%s is not valid JSON" % (self.root, name), "")
        return doc, validate(doc)

    def load(self):
        """The config in force; a trial left unconfirmed is rolled back first."""
        self.rolled_back_at_boot = None
        self.trial = None
        marker = self._read(self.TRIAL)
        if marker is not None:
            try:
                info = json.loads(marker)
            except ValueError:
                info = None
            if not isinstance(info, dict) or not info:
                info = {"previous": None, "version": None}  # a damaged marker
            prev = self._read(self.PREV)
            if prev is not None:
                self._replace(self.FILE, prev)
            self._remove(self.TRIAL)
            self.rolled_back_at_boot = info
        data = self._read(self.FILE)
        if data is None:
            raise ConfigError("gateway not provisioned: no %s/%s" % (self.root, self.FILE), "")
        self.doc, self.cfg = self._parse(data, self.FILE)
        return self.cfg

    def previous_version(self):
        """Version of config.prev, or None."""
        data = self._read(self.PREV)
        try:
            return json.loads(data)["version"] if data is not None else None
        except (ValueError, KeyError, TypeError):
            return None

    # --- writing ---------------------------------------------------------------
    def _keep_previous(self):
        old = self._read(self.FILE)
        if old is not None:
            self._replace(self.PREV, old)

    def save(self, doc):
        """Validate and write a document (provisioning); returns the config."""
        if self.trial is not None:
            raise ConfigError("a config trial is in progress", "")
        cfg = validate(doc)
        if not _exists(self.root):
            os.mkdir(self.root)
        self._keep_previous()
        self._replace(self.FILE, dumps(doc))
        self.doc, self.cfg = doc, cfg
        return cfg

    def begin_trial(self, doc):
        """Put a new document in force until confirm() or rollback()."""
        if self.cfg is None or self.trial is not None:
            raise ConfigError("no config loaded" if self.cfg is None
                              else "a config trial is in progress", "")
        cfg = validate(doc)
        marker = {"previous": self.cfg["version"], "version": cfg["version"]}
        self._keep_previous()  # config.prev = the config in force
        self._replace(self.TRIAL, dumps(marker))
        self._replace(self.FILE, dumps(doc))
        self.trial = marker
        self.doc, self.cfg = doc, cfg
        return cfg

    def confirm(self):
        if self.trial is not None:
            self._remove(self.TRIAL)
            self.trial = None

    def rollback(self):
        """Restore the config in force before the trial; returns it."""
        if self.trial is None:
            return self.cfg
        prev = self._read(self.PREV)
        if prev is not None:
            self._replace(self.FILE, prev)
            self.doc, self.cfg = self._parse(prev, self.PREV)
        self._remove(self.TRIAL)
        self.trial = None
        return self.cfg
