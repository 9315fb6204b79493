# Commands from the fleet (docs/protocol.md, "`cmd` and `cmd/result`"):
# parse, check idempotency, dispatch to the app's operations, and build the
# correlated result. Sans-I/O: the app hands in each `cmd` payload and
# publishes what comes back on `cmd/result`; the operations themselves
# (reconnect the uplink, start instrument sessions, reboot) are the app's.
#
# Theory of operation
# - parse_command() checks the envelope and the op's args (CommandError with
#   the contract's code: bad_command, unknown_op, expired, bad_args naming
#   the path, e.g. `args.config.uplink.heartbeat_s`).
# - CommandHandler keeps the results of the last KEEP command ids in
#   `cmd_results.json` (one result payload per line, rewritten atomically).
#   An id seen again gets its stored result with "replay":true and is not run
#   again. Before an op runs, a `pending` line is written for its id: a power
#   cut during the op leaves a trace, answered at boot as failed
#   ("interrupted") rather than run twice.
# - Commands refused before running (bad_command, unknown_op, expired, busy,
#   bad_args from the envelope check) are not stored: they cost nothing to
#   refuse again, and cannot push real results out of the window.
# - apply_config is the one op whose result comes later: the op starts a
#   config trial (apply_config_op) and returns "pending"; the app polls a
#   ConfigTrial and calls conclude_trial(), which confirms or rolls back the
#   ConfigStore and finishes the command. The same id re-delivered meanwhile
#   gets nothing (its result follows); another apply_config gets `busy`.
#   At boot, resume_at_boot() finishes a command whose trial a restart cut.
# - Results are compact JSON, integer ms, at most MAX_STORED bytes kept per
#   result (a bigger diagnostics result is replayed as {"truncated":true}).
import json
import os

from gateway.config import (
    BOOL,
    INT,
    MAXINT,
    NULL,
    OBJ,
    REQ,
    STR,
    STRS,
    ConfigError,
    check,
    dumps,
    is_id,
    is_int,
    merge,
    validate,
    write_file,
)

VERSION = 1
KEEP = 32  # command results kept for replay
MAX_COMMAND_BYTES = 8192
MAX_STORED = 512
TRIAL_MS = 120000  # how long a new config has to bring the uplink up
RESULTS = "cmd_results.json"

# op -> args schema (gateway/config.py field tuples)
ARGS = {
    "apply_config": {"version": (INT, None, REQ, 1, MAXINT),
                     "config": (OBJ, None, REQ, None, None)},
    "sync_now": {"instruments": (STRS, None, NULL, None, 16)},
    "set_time": {"time": (INT, None, REQ, 1577836800000, 4102444800000)},  # 2020..2100
    "reboot": {"delay_ms": (INT, 2000, 0, 0, 600000)},
    "diagnostics": {},
    # the firmware's update agent (firmware/board/ota_agent.py); a gateway
    # without one answers unknown_op
    "ota": {"version": (STR, None, REQ, 5, 32), "url": (STR, None, REQ, 8, 1024),
            "size": (INT, None, REQ, 1, MAXINT), "sha256": (STR, None, REQ, 64, 64),
            "deadline_s": (INT, 3600, 0, 60, 604800),
            "allow_downgrade": (BOOL, False, 0, None, None)},
}


class CommandError(ValueError):
    """A command refused with one of the contract's error codes."""

    def __init__(self, code, detail, cid=None, op=None):
        super().__init__("%s: %s" % (code, detail))
        self.code = code
        self.detail = detail
        self.id = cid
        self.op = op


def _opt_int(d, name, cid, op):
    v = d.get(name)
    if v is not None and not is_int(v):
        raise CommandError("bad_command", "%s must be integer unix ms" % name, cid, op)
    return v


def parse_command(payload, now_ms, max_bytes=MAX_COMMAND_BYTES):
    """{"id", "op", "args" (defaults filled), "ts", "expires"} of a `cmd`
    payload, or CommandError (with .id and .op when they could be read)."""
    if len(payload) > max_bytes:
        raise CommandError("bad_command", "over %d bytes" % max_bytes)
    try:
        d = json.loads(payload)
    except ValueError:  # not JSON, or not UTF-8
        raise CommandError("bad_command", "not JSON")
    if not isinstance(d, dict):
        raise CommandError("bad_command", "not a JSON object")
    cid = d.get("id")
    cid = cid if is_id(cid, 1, 64, "_.:-") else None
    op = d.get("op")
    op = op if isinstance(op, str) and 0 < len(op) <= 32 else None
    v = d.get("v")
    if not is_int(v) or v != VERSION:
        raise CommandError("bad_command", "v must be %d" % VERSION, cid, op)
    if cid is None:
        raise CommandError("bad_command", "id must be 1-64 characters [A-Za-z0-9_.:-]", None, op)
    if op is None:
        raise CommandError("bad_command", "op must be a string", cid)
    ts = _opt_int(d, "ts", cid, op)
    expires = _opt_int(d, "expires", cid, op)
    if op not in ARGS:
        raise CommandError("unknown_op", "unknown op %s" % op, cid, op)
    if expires is not None and now_ms > expires:
        raise CommandError("expired", "expired %d ms ago" % (now_ms - expires), cid, op)
    try:
        args = check(d.get("args", {}), ARGS[op], "args")
    except ConfigError as e:
        raise CommandError("bad_args", str(e), cid, op)
    return {"id": cid, "op": op, "args": args, "ts": ts, "expires": expires}


def result_payload(cid, op, ts, ok, result=None, error=None, detail=None):
    """A `cmd/result` payload (bytes)."""
    d = {"v": VERSION, "ok": ok, "ts": ts}
    if cid is not None:
        d["id"] = cid
    if op is not None:
        d["op"] = op
    if ok:
        d["result"] = result if result is not None else {}
    else:
        d["error"] = error
        if detail is not None:
            d["detail"] = detail[:200]
    return dumps(d)


class CommandHandler:
    def __init__(self, store_dir, ops, clock, keep=KEEP):
        self.dir = store_dir
        self.ops = ops  # dict or object: op name -> callable(args)
        self.clock = clock
        self.keep = keep
        self.stats = {"received": 0, "executed": 0, "replays": 0, "rejected": {},
                      "interrupted": 0, "corrupt_results": 0, "store_errors": 0}  # type: dict
        self.reboot_in_ms = None  # set by a successful reboot: the app reboots after publishing
        self._entries = []  # [id, stored payload bytes, pending line dict or None], oldest first
        self._load()

    # --- persistence -----------------------------------------------------------
    def _path(self):
        return self.dir + "/" + RESULTS

    def _load(self):
        try:
            f = open(self._path(), "rb")
        except OSError:
            return
        changed = False
        with f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    d = json.loads(line)
                    cid = d["id"]
                except (ValueError, KeyError, TypeError):
                    self.stats["corrupt_results"] += 1
                    continue
                pending = d if d.get("pending") is True else None
                if pending is not None and d.get("op") != "apply_config":
                    # A power cut while the op ran: it may have run; never run it twice.
                    line = result_payload(cid, d.get("op"), self.clock.now_ms(), False,
                                          error="failed",
                                          detail="interrupted: the gateway restarted while it ran")
                    pending = None
                    changed = True
                    self.stats["interrupted"] += 1
                self._add([cid, line, pending])
        if changed:
            try:
                self._save()
            except OSError:
                self.stats["store_errors"] += 1

    def _save(self):
        path = self._path()
        write_file(path + ".tmp", self._lines())
        os.rename(path + ".tmp", path)

    def _lines(self):
        for e in self._entries:
            yield e[1]
            yield b"\n"

    def _find(self, cid):
        for e in self._entries:
            if e[0] == cid:
                return e
        return None

    def _add(self, entry):
        # Evict first: the list never grows past `keep` (no realloc on a fragmented heap).
        if len(self._entries) >= self.keep:
            for i in range(len(self._entries)):
                if self._entries[i][2] is None:  # the oldest finished one
                    del self._entries[i]
                    break
        self._entries.append(entry)

    # --- handling --------------------------------------------------------------
    def _replay(self, entry):
        self.stats["replays"] += 1
        if entry[2] is not None:
            return None  # still running: its result will follow
        return entry[1][:-1] + b',"replay":true}'

    def _refuse(self, code, detail, cid, op, now_ms):
        r = self.stats["rejected"]
        r[code] = r.get(code, 0) + 1
        return result_payload(cid, op, now_ms, False, error=code, detail=detail)

    def _op(self, name):
        if isinstance(self.ops, dict):
            return self.ops.get(name)
        return getattr(self.ops, name, None)

    def pending(self, op):
        """The id of the command of `op` whose result is still to come, or None."""
        for e in self._entries:
            if e[2] is not None and e[2].get("op") == op:
                return e[0]
        return None

    def pending_apply(self):
        """(id, version) of the apply_config whose result is still to come, or None."""
        for e in self._entries:
            if e[2] is not None and e[2].get("op") == "apply_config":
                return e[0], e[2].get("version")
        return None

    def handle(self, payload, now_ms):
        """The `cmd/result` payload to publish for a `cmd` payload, or None
        when the result comes later (finish())."""
        self.stats["received"] += 1
        self.reboot_in_ms = None
        try:
            cmd = parse_command(payload, now_ms)
        except CommandError as e:
            entry = self._find(e.id) if e.id is not None else None
            if entry is not None:
                return self._replay(entry)
            return self._refuse(e.code, e.detail, e.id, e.op, now_ms)
        cid, op, args = cmd["id"], cmd["op"], cmd["args"]
        entry = self._find(cid)
        if entry is not None:
            return self._replay(entry)
        fn = self._op(op)
        if fn is None:
            return self._refuse("unknown_op", "op %s not supported by this gateway" % op,
                                cid, op, now_ms)
        busy = self.pending_apply() if op == "apply_config" else None
        if busy is not None:
            return self._refuse("busy", "apply_config %s in progress" % busy[0], cid, op, now_ms)
        # Write-ahead: the id is on flash before the op can have any effect.
        line = {"v": VERSION, "id": cid, "op": op, "pending": True, "ts": now_ms}
        if op == "apply_config":
            line["version"] = args["version"]
        entry = [cid, dumps(line), line]
        self._add(entry)
        try:
            self._save()
        except OSError as e:  # flash full or failing: do not run what cannot be recorded
            self._entries.remove(entry)
            return self._refuse("failed", "cannot record the command: %s" % e, cid, op, now_ms)
        self.stats["executed"] += 1
        try:
            res = fn(args)
        except CommandError as e:  # e.g. bad_args from apply_config_op
            return self._complete(entry, False, error=e.code, detail=e.detail)
        except Exception as e:  # an op's failure never stops the command loop
            return self._complete(entry, False, error="failed",
                                  detail="%s: %s" % (type(e).__name__, e))
        if res == "pending":
            return None
        if not isinstance(res, dict):
            return self._complete(entry, False, error="failed", detail="op gave no result object")
        if op == "reboot":
            if "in_ms" not in res:
                res["in_ms"] = args["delay_ms"]
            self.reboot_in_ms = res["in_ms"]
        return self._complete(entry, True, res)

    def _complete(self, entry, ok, result=None, error=None, detail=None):
        now = self.clock.now_ms()
        cid, op = entry[0], entry[2]["op"]
        try:
            payload = result_payload(cid, op, now, ok, result, error, detail)
            json.loads(payload)  # MicroPython's dumps writes sets and objects as non-JSON
        except (TypeError, ValueError):  # a result that is not JSON
            ok, error = False, "failed"
            payload = result_payload(cid, op, now, False, error=error,
                                     detail="op result is not JSON")
        if not ok:
            r = self.stats["rejected"]
            r[error] = r.get(error, 0) + 1
        entry[1] = payload if len(payload) <= MAX_STORED else \
            result_payload(cid, op, now, ok, {"truncated": True})
        entry[2] = None
        try:
            self._save()
        except OSError:  # published anyway; a re-sent id would then run again
            self.stats["store_errors"] += 1
        return payload

    def finish(self, cid, ok, result=None, error=None, detail=None):
        """Complete a pending command; returns its result payload (stored for
        replay), or None if `cid` is not pending."""
        entry = self._find(cid)
        if entry is None or entry[2] is None:
            return None
        return self._complete(entry, ok, result, error, detail)


# --- apply_config --------------------------------------------------------------
def apply_config_op(store, args):
    """The body of the app's apply_config op: merge args.config over the
    document in force, validate, and start a trial on the ConfigStore. Returns
    the new config; CommandError bad_args names the bad field."""
    cur = store.cfg["version"]
    if args["version"] <= cur:
        raise CommandError("bad_args", "args.version: must be above the current version %d" % cur)
    if "version" in args["config"]:
        raise CommandError("bad_args", "args.config.version: set by args.version")
    doc = merge(store.doc, args["config"])
    doc["version"] = args["version"]
    try:
        validate(doc)
    except ConfigError as e:
        raise CommandError("bad_args", "args.config." + str(e))
    return store.begin_trial(doc)


class ConfigTrial:
    """How long a new config has to prove itself. poll() answers "confirmed"
    once the uplink has been up with the new settings for settle_ms,
    "rolled_back" when the deadline passes first, and None meanwhile; the
    outcome is answered once (then None; it stays in .outcome)."""

    def __init__(self, deadline_ms, settle_ms=0):
        self.deadline_ms = deadline_ms
        self.settle_ms = settle_ms
        self.outcome = None
        self._up_since = None

    def poll(self, now_ms, uplink_ok):
        if self.outcome is not None:
            return None
        if not uplink_ok:
            self._up_since = None
        elif self._up_since is None:
            self._up_since = now_ms
        if self._up_since is not None and now_ms - self._up_since >= self.settle_ms:
            self.outcome = "confirmed"
        elif now_ms >= self.deadline_ms:
            self.outcome = "rolled_back"
        return self.outcome


def conclude_trial(handler, store, outcome):
    """Act on a ConfigTrial outcome: confirm or roll back the store (config on
    flash first), then finish the apply_config command. Returns the result
    payload to publish (None if no command was waiting); after a rollback the
    app puts store.cfg back in force."""
    t = store.trial or {}
    if outcome == "confirmed":
        store.confirm()
    else:
        store.rollback()
    pend = handler.pending_apply()
    if pend is None:
        return None
    if outcome == "confirmed":
        return handler.finish(pend[0], True, {"version": t.get("version"),
                                              "previous": t.get("previous")})
    return handler.finish(pend[0], False, error="rolled_back",
                          detail="uplink not up with config %s before the deadline; %s restored"
                          % (t.get("version"), store.cfg["version"]))


def resume_at_boot(handler, store):
    """After store.load(): finish an apply_config a restart interrupted.
    Returns the result payload to publish, or None."""
    pend = handler.pending_apply()
    if pend is None:
        return None
    cid, version = pend
    if store.rolled_back_at_boot is None and store.cfg["version"] == version:
        # confirmed just before the restart
        return handler.finish(cid, True, {"version": version,
                                          "previous": store.previous_version()})
    return handler.finish(cid, False, error="rolled_back",
                          detail="restarted before config %s was confirmed; %s in force"
                          % (version, store.cfg["version"]))
