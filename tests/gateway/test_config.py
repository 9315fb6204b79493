# mpy-portable
# The gateway's configuration: schema validation with the path of the bad
# field, defaults, partial updates, redaction, and the store's atomic writes
# and trials, with a power cut before every file operation.
import json

from gateway.config import (
    LIST,
    SCHEMA,
    SECTION,
    ConfigError,
    ConfigStore,
    merge,
    redacted,
    validate,
    write_file,
)
from tests.portable import raises, repo_path, rmtree, tmpdir

BP = {"addr": "c4:7c:8d:6a:11:02", "kind": "ble", "profile": "blood_pressure"}
ECG = {"addr": "ecg-1", "kind": "serial", "profile": "ecg_cyton", "port": "/dev/ttyUSB0"}


def _doc(version=1, **extra):
    d = {"version": version, "unit": "U042", "gateway": "gw-u042",
         "uplink": {"broker_host": "mqtt.example.org"}, "network": {"mode": "host"}}
    return merge(d, extra)


def test_defaults_fill_a_minimal_document():
    cfg = validate(_doc())
    up = cfg["uplink"]
    assert up["heartbeat_s"] == 60 and up["window"] == 4 and up["keepalive_s"] == 60
    assert up["tls"] is True and up["broker_port"] == 8883
    assert up["username"] == "gw-u042" and up["password"] is None
    assert cfg["journal"] == {"capacity_bytes": 2000000, "health_share": 0.5}
    assert cfg["clock"] == {"ntp_server": "pool.ntp.org", "slew_ms": 2000}
    assert cfg["instruments"] == [] and cfg["indicator"]["buzzer"] is True
    assert cfg["network"]["wifi_ssid"] is None


def test_derived_defaults_and_instrument_defaults():
    cfg = validate(_doc(uplink={"tls": False}, instruments=[BP, ECG]))
    assert cfg["uplink"]["broker_port"] == 1883
    bp, ecg = cfg["instruments"]
    assert bp["addr"] == "C4:7C:8D:6A:11:02"  # normalized
    assert bp["passkey"] is None and bp["quirks"] == [] and bp["set_clock"] is True
    assert bp["port"] is None and bp["baud"] is None
    assert ecg["baud"] == 115200
    one = dict(ECG, profile="onetouch", addr="meter", baud=19200)
    assert validate(_doc(instruments=[one]))["instruments"][0]["baud"] == 19200


def test_validate_is_idempotent_and_keeps_explicit_values():
    doc = _doc(uplink={"broker_port": 1884, "username": "tech", "password": "s3cret!",
                       "heartbeat_s": 30},
               network={"mode": "wifi", "wifi_ssid": "unit42", "wifi_password": "password1"},
               instruments=[dict(BP, passkey="012345", quirks=["bp_pulse_big_endian"]), ECG])
    cfg = validate(doc)
    assert validate(cfg) == cfg
    assert cfg["uplink"]["broker_port"] == 1884 and cfg["uplink"]["username"] == "tech"
    assert cfg["instruments"][0]["passkey"] == "012345"
    assert doc["instruments"][0]["addr"] == "c4:7c:8d:6a:11:02"  # the input is not changed


def _bp(**kw):
    return [dict(BP, **kw)]


def _ecg(**kw):
    return [dict(ECG, **kw)]


# (partial merged over a valid document, path of the error)
BAD = (  # type: tuple
    ({"version": 0}, "version"),
    ({"version": "1"}, "version"),
    ({"version": True}, "version"),
    ({"unit": "U 42"}, "unit"),
    ({"unit": ""}, "unit"),
    ({"gateway": 5}, "gateway"),
    ({"gateway": "g" * 33}, "gateway"),
    ({"extra": 1}, "extra"),
    ({"uplink": []}, "uplink"),
    ({"uplink": {"broker_host": None}}, "uplink.broker_host"),
    ({"uplink": {"broker_host": ""}}, "uplink.broker_host"),
    ({"uplink": {"broker_port": 0}}, "uplink.broker_port"),
    ({"uplink": {"broker_port": 65536}}, "uplink.broker_port"),
    ({"uplink": {"tls": "yes"}}, "uplink.tls"),
    ({"uplink": {"password": 1234}}, "uplink.password"),
    ({"uplink": {"heartbeat_s": 9}}, "uplink.heartbeat_s"),
    ({"uplink": {"heartbeat_s": 3601}}, "uplink.heartbeat_s"),
    ({"uplink": {"heartbeat_s": 60.0}}, "uplink.heartbeat_s"),
    ({"uplink": {"hearbeat_s": 60}}, "uplink.hearbeat_s"),
    ({"uplink": {"window": 17}}, "uplink.window"),
    ({"uplink": {"window": 0}}, "uplink.window"),
    ({"uplink": {"resend_after_s": 1}}, "uplink.resend_after_s"),
    ({"uplink": {"backoff_min_s": 30, "backoff_max_s": 10}}, "uplink.backoff_max_s"),
    ({"network": {"mode": "lte"}}, "network.mode"),
    ({"network": {"mode": "wifi"}}, "network.wifi_ssid"),
    ({"network": {"mode": "ppp"}}, "network.apn"),
    ({"network": {"wifi_password": "short"}}, "network.wifi_password"),
    ({"network": {"apn": ""}}, "network.apn"),
    ({"journal": {"health_share": 1.5}}, "journal.health_share"),
    ({"journal": {"health_share": "half"}}, "journal.health_share"),
    ({"journal": {"capacity_bytes": 100}}, "journal.capacity_bytes"),
    ({"clock": {"slew_ms": -1}}, "clock.slew_ms"),
    ({"clock": {"ntp_server": ""}}, "clock.ntp_server"),
    ({"indicator": {"brightness": 101}}, "indicator.brightness"),
    ({"indicator": {"color": "red"}}, "indicator.color"),
    ({"instruments": {}}, "instruments"),
    ({"instruments": [BP] * 17}, "instruments"),
    ({"instruments": ["C4:7C:8D:6A:11:02"]}, "instruments[0]"),
    ({"instruments": [BP, dict(BP, addr="C4:7C:8D:6A:11:0")]}, "instruments[1].addr"),
    ({"instruments": _bp(addr="C4-7C-8D-6A-11-02")}, "instruments[0].addr"),
    ({"instruments": _bp(addr="G4:7C:8D:6A:11:02")}, "instruments[0].addr"),
    ({"instruments": [BP, dict(BP, addr="C4:7C:8D:6A:11:02")]}, "instruments[1].addr"),
    ({"instruments": [ECG, dict(ECG, port="/dev/ttyUSB1")]}, "instruments[1].addr"),
    ({"instruments": [{"kind": "ble", "profile": "glucose"}]}, "instruments[0].addr"),
    ({"instruments": _bp(kind="usb")}, "instruments[0].kind"),
    ({"instruments": _bp(profile="scale")}, "instruments[0].profile"),
    ({"instruments": _bp(profile="onetouch")}, "instruments[0].profile"),
    ({"instruments": _ecg(profile="glucose")}, "instruments[0].profile"),
    ({"instruments": _bp(passkey="12345")}, "instruments[0].passkey"),
    ({"instruments": _bp(passkey=123456)}, "instruments[0].passkey"),
    ({"instruments": _bp(passkey="12345a")}, "instruments[0].passkey"),
    ({"instruments": _ecg(passkey="123456")}, "instruments[0].passkey"),
    ({"instruments": _ecg(port=None)}, "instruments[0].port"),
    ({"instruments": _bp(port="/dev/ttyS0")}, "instruments[0].port"),
    ({"instruments": _bp(baud=9600)}, "instruments[0].baud"),
    ({"instruments": _ecg(baud=50)}, "instruments[0].baud"),
    ({"instruments": _bp(quirks=["nope"])}, "instruments[0].quirks[0]"),
    ({"instruments": _bp(quirks="bp_pulse_big_endian")}, "instruments[0].quirks"),
    ({"instruments": _bp(set_clock=1)}, "instruments[0].set_clock"),
    ({"instruments": _bp(name="")}, "instruments[0].name"),
    ({"instruments": _bp(pin="123456")}, "instruments[0].pin"),
)


def test_every_bad_field_is_named_by_its_path():
    for partial, path in BAD:
        e = raises(ConfigError, validate, _doc(**partial))
        assert e.path == path, (partial, e.path, path)
        assert str(e).startswith(path + ": "), str(e)


def test_missing_required_fields_and_non_objects():
    for name in ("version", "unit", "gateway"):
        doc = _doc()
        del doc[name]
        assert raises(ConfigError, validate, doc).path == name
    doc = _doc()
    del doc["uplink"]
    e = raises(ConfigError, validate, doc)
    assert e.path == "uplink.broker_host" and e.msg == "required"
    del doc["network"]
    doc["uplink"] = {"broker_host": "h"}
    assert raises(ConfigError, validate, doc).path == "network.mode"
    for bad in ([1], "x", None, 1):
        assert raises(ConfigError, validate, bad).path == ""


def test_errors_never_echo_the_bad_value():
    e = raises(ConfigError, validate, _doc(network={"wifi_password": "hunter2"}))
    assert "hunter2" not in str(e)
    e = raises(ConfigError, validate, _doc(instruments=_bp(passkey="98765")))
    assert "98765" not in str(e)


def test_merge_objects_recursively_and_replaces_lists():
    base = _doc(instruments=[BP, ECG], uplink={"heartbeat_s": 30})
    out = merge(base, {"uplink": {"window": 8}, "instruments": [ECG], "clock": {"slew_ms": 0}})
    assert out["uplink"] == {"broker_host": "mqtt.example.org", "heartbeat_s": 30, "window": 8}
    assert out["instruments"] == [ECG] and out["clock"] == {"slew_ms": 0}
    assert base["uplink"] == {"broker_host": "mqtt.example.org", "heartbeat_s": 30}
    assert len(base["instruments"]) == 2 and "clock" not in base
    assert merge(base, {"uplink": None})["uplink"] is None  # then validate names it


def test_redacted_masks_secrets_only():
    cfg = validate(_doc(uplink={"password": "s3cret!"},
                        network={"mode": "ppp", "apn": "internet", "apn_password": "pw"},
                        instruments=[dict(BP, passkey="012345"), ECG]))
    r = redacted(cfg)
    text = json.dumps(r)
    for secret in ("s3cret!", '"pw"', "012345"):
        assert secret not in text, secret
    assert r["uplink"]["password"] == "***" and r["network"]["apn_password"] == "***"
    assert r["network"]["wifi_password"] is None  # unset stays visible as unset
    assert r["instruments"][0]["passkey"] == "***" and r["instruments"][1]["passkey"] is None
    assert r["uplink"]["broker_host"] == "mqtt.example.org" and r["network"]["apn"] == "internet"
    assert cfg["uplink"]["password"] == "s3cret!"  # the config itself is not changed
    assert redacted({"uplink": {"pasword": "typo"}})["uplink"]["pasword"] == "***"


def _paths(schema, prefix):
    for name, spec in schema.items():
        if spec[0] == SECTION:
            yield from _paths(spec[3], prefix + name + ".")
        elif spec[0] == LIST:
            yield from _paths(spec[3], prefix + name + "[].")
        else:
            yield prefix + name


def test_docs_describe_every_field():
    missing = ["`%s`" % p for p in _paths(SCHEMA, "")]
    with open(repo_path("docs/gateway.md")) as f:
        for line in f:  # line by line: the page is larger than a free block
            missing = [p for p in missing if p not in line]
    assert not missing, missing


# --- the store ----------------------------------------------------------------
def test_load_explains_a_missing_or_broken_file():
    d = tmpdir("cfg")
    try:
        e = raises(ConfigError, ConfigStore(d).load)
        assert "not provisioned" in str(e) and e.path == ""
        write_file(d + "/config.json", (b'{"version": 1, "unit": ',))
        e = raises(ConfigError, ConfigStore(d).load)
        assert e.path == "" and "not valid JSON" in str(e)
        write_file(d + "/config.json", (json.dumps(_doc(uplink={"window": 99})).encode(),))
        assert raises(ConfigError, ConfigStore(d).load).path == "uplink.window"
    finally:
        rmtree(d)
    assert "not provisioned" in str(raises(ConfigError, ConfigStore(d + "/none").load))


def test_save_writes_the_document_and_keeps_the_previous_file():
    d = tmpdir("cfg")
    try:
        s = ConfigStore(d)
        cfg = s.save(_doc())
        assert cfg["uplink"]["window"] == 4 and s.cfg == cfg
        with open(d + "/config.json") as f:
            assert json.loads(f.read()) == _doc()  # defaults stay in code
        s.save(_doc(2, uplink={"window": 8}))
        assert s.previous_version() == 1
        s2 = ConfigStore(d)
        assert s2.load()["uplink"]["window"] == 8 and s2.rolled_back_at_boot is None
        assert raises(ConfigError, s2.save, _doc(3, uplink={"window": 0})).path == \
            "uplink.window"
        assert ConfigStore(d).load()["version"] == 2  # a bad document is never written
    finally:
        rmtree(d)


class PowerCut(Exception):
    pass


class CrashyStore(ConfigStore):
    """Power is cut before file operation number `crash_at` (a torn write
    leaves half the file)."""

    def __init__(self, root, crash_at=0, torn=False):
        super().__init__(root)
        self.crash_at = crash_at
        self.torn = torn
        self.steps = 0

    def _step(self):
        self.steps += 1
        return self.steps == self.crash_at

    def _write(self, name, data):
        if self._step():
            if self.torn:
                write_file(self._path(name), (data[:len(data) // 2],))
            raise PowerCut()
        ConfigStore._write(self, name, data)

    def _rename(self, src, dst):
        if self._step():
            raise PowerCut()
        ConfigStore._rename(self, src, dst)

    def _remove(self, name):
        if self._step():
            raise PowerCut()
        ConfigStore._remove(self, name)


def _provisioned():
    d = tmpdir("cfg")
    ConfigStore(d).save(_doc(1))
    return d


def _every_cut(action, check):
    """Run action(store) with the power cut before step k, for every k (plain
    and torn writes), then boot a fresh store and check(store, completed)."""
    k = 1
    while True:
        done = True
        for torn in (False, True):
            d = _provisioned()
            try:
                s = CrashyStore(d, k, torn)
                s.load()
                try:
                    action(s)
                except PowerCut:
                    done = False
                boot = ConfigStore(d)
                boot.load()
                check(boot, done)
            finally:
                rmtree(d)
        if done:
            return k
        k += 1


def test_save_survives_a_power_cut_at_every_step():
    def check(boot, done):
        assert boot.cfg["version"] == 2 if done else boot.cfg["version"] in (1, 2)
        assert boot.rolled_back_at_boot is None

    steps = _every_cut(lambda s: s.save(_doc(2)), check)
    assert steps >= 4  # copy to prev (write, rename), new file (write, rename)


def test_a_trial_cut_by_power_is_rolled_back_at_boot():
    def check(boot, done):
        assert boot.cfg["version"] == 1
        assert boot.rolled_back_at_boot in (None, {"previous": 1, "version": 2})
        if done:
            assert boot.rolled_back_at_boot == {"previous": 1, "version": 2}
        assert ConfigStore(boot.root).load()["version"] == 1  # and it stays so
        assert boot.trial is None

    _every_cut(lambda s: s.begin_trial(_doc(2)), check)


def test_the_boot_rollback_itself_survives_power_cuts():
    k = 1
    while True:
        d = _provisioned()
        try:
            s = ConfigStore(d)
            s.load()
            s.begin_trial(_doc(2))
            crashy = CrashyStore(d, k)
            try:
                crashy.load()
                done = True
            except PowerCut:
                done = False
            boot = ConfigStore(d)
            assert boot.load()["version"] == 1
            assert done or boot.rolled_back_at_boot == {"previous": 1, "version": 2}
        finally:
            rmtree(d)
        if done:
            break
        k += 1
    assert k > 1


def test_trial_confirm_and_rollback():
    d = _provisioned()
    try:
        s = ConfigStore(d)
        s.load()
        cfg = s.begin_trial(_doc(2, uplink={"heartbeat_s": 120}))
        assert cfg["uplink"]["heartbeat_s"] == 120 and s.cfg is cfg
        assert s.trial == {"previous": 1, "version": 2}
        assert "in progress" in str(raises(ConfigError, s.begin_trial, _doc(3)))
        assert "in progress" in str(raises(ConfigError, s.save, _doc(3)))
        s.confirm()
        assert s.trial is None
        boot = ConfigStore(d)
        assert boot.load()["version"] == 2 and boot.rolled_back_at_boot is None

        boot.begin_trial(_doc(3, uplink={"window": 2}))
        assert boot.rollback()["version"] == 2 and boot.cfg["uplink"]["heartbeat_s"] == 120
        assert boot.cfg["uplink"]["window"] == 4 and boot.trial is None
        assert boot.doc == _doc(2, uplink={"heartbeat_s": 120})
        again = ConfigStore(d)
        assert again.load()["version"] == 2 and again.rolled_back_at_boot is None
    finally:
        rmtree(d)


def test_a_runtime_rollback_cut_by_power_still_ends_on_the_previous_config():
    k = 1
    while True:
        d = _provisioned()
        try:
            s = CrashyStore(d)
            s.load()
            s.begin_trial(_doc(2))
            s.crash_at, s.steps = k, 0
            try:
                s.rollback()
                done = True
            except PowerCut:
                done = False
            assert ConfigStore(d).load()["version"] == 1
        finally:
            rmtree(d)
        if done:
            break
        k += 1


def test_a_trial_needs_a_valid_document_and_a_loaded_config():
    d = _provisioned()
    try:
        s = ConfigStore(d)
        assert "no config loaded" in str(raises(ConfigError, s.begin_trial, _doc(2)))
        s.load()
        e = raises(ConfigError, s.begin_trial, _doc(2, network={"mode": "ppp"}))
        assert e.path == "network.apn" and s.trial is None
        assert ConfigStore(d).load()["version"] == 1
    finally:
        rmtree(d)


def test_a_damaged_trial_marker_still_rolls_back():
    d = _provisioned()
    try:
        s = ConfigStore(d)
        s.load()
        s.begin_trial(_doc(2))
        write_file(d + "/trial", (b"\x00\x00",))
        boot = ConfigStore(d)
        assert boot.load()["version"] == 1
        assert boot.rolled_back_at_boot == {"previous": None, "version": None}
    finally:
        rmtree(d)
