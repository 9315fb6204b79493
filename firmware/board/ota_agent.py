# The fleet's `ota` command on the gateway (docs/protocol.md "OTA"): the
# Runtime's `ota` op hands its args here (gateway/runtime.py, the `ota_agent`
# hook), and this module does the rest with the board's OTA code:
#
#   download   httpget.get_range() in RANGE_BYTES pieces -> ota.Receiver
#              (on flash; a restart or a dropped link resumes at rx.offset)
#   check      Receiver.finish(): the bundle's SHA-256 (the command's sha256)
#   stage      Ota.stage(path, ummc_keys.TRUSTED): signature by a key this
#              firmware trusts, target, newer version, every file's hash,
#              unpacked into the inactive slot and read back
#   switch     Ota.switch(): the staged slot on trial, rolled back by itself
#              unless confirmed healthy within `deadline_s` (window and
#              wall-clock deadline)
#   answer     done(True, result): the Runtime finishes the command and
#              publishes its result; once published (or after PUBLISH_WAIT_S)
#              on_switched() ends the app, which resets into the new slot
# Any refusal answers done(False, error=code, detail): the Receiver's and
# stage's codes (hash_mismatch, unknown_key, bad_signature, downgrade, busy,
# ...) or the download's (http_status, download_failed, bad_response).
# A refused bundle is removed from flash; a download that failed half-way is
# kept so the same command sent again resumes it.
# Between the last byte written and the switch nothing awaits: ota_apply's
# Updater (which installs a whole bundle found on flash) cannot step in.
# Portable (MicroPython and CPython).
import asyncio

import httpget
import ota

RANGE_BYTES = 16384
RETRIES = 5  # transient download errors in a row before the command fails
PUBLISH_WAIT_S = 10


class OtaAgent:
    def __init__(self, root, trusted, clock=None, on_switched=None, range_bytes=RANGE_BYTES,
                 ssl=None):
        self.root = root
        self.trusted = trusted
        self.clock = clock
        self.on_switched = on_switched  # (version) -> None: restart into it
        self.range_bytes = range_bytes
        self.ssl = ssl
        self.task = None
        self.state = None  # what diagnostics may show: downloading/staging/switched/failed
        self.received = 0

    def busy(self):
        return self.task is not None and not self.task.done()

    def start(self, args, done, published=None):
        """Begin an update; "pending" (the result comes through done()).
        `published()` says when the result has left the gateway."""
        if self.busy():
            return None
        self.task = asyncio.create_task(self._run(args, done, published))
        return "pending"

    def _now(self):
        c = self.clock
        return c.now_ms() if c is not None and getattr(c, "synced", True) else None

    async def _download(self, rx, url):
        tries = 0
        while not rx.complete:
            end = min(rx.offset + self.range_bytes, rx.size)
            try:
                await httpget.get_range(url, rx.offset, end, rx.write, ssl=self.ssl)
                tries = 0
            except httpget.HttpError as e:
                tries += 1
                if not e.transient or tries >= RETRIES:
                    raise
                await asyncio.sleep(min(1 << tries, 30))
            self.received = rx.offset

    async def _run(self, args, done, published):
        deadline_ms = args["deadline_s"] * 1000
        o = ota.Ota(self.root, window_ms=deadline_ms, deadline_ms=deadline_ms)
        try:
            st = o.state()
            if st is not None and st["pending"]:
                raise ota.UpdateStateError("busy", "version in slot %s is on trial"
                                           % st["pending"])
            if not self.trusted:
                raise ota.UpdateStateError("no_trusted_keys", "this firmware trusts no key")
            current = o.slot_version(st["active"]) if st else None
            self.state = "downloading"
            rx = o.receiver(args["size"], args["sha256"])
            await self._download(rx, args["url"])
            # From here to the switch nothing awaits (see the header).
            self.state = "staging"
            path = rx.finish()
            m = o.stage(path, self.trusted, allow_downgrade=args.get("allow_downgrade", False))
            if m["version"] != args["version"]:
                raise ota.BundleRejected("wrong_version", "bundle is %s, command says %s"
                                         % (m["version"], args["version"]))
            slot = o.switch(self._now())
            o.clear_incoming()
        except ota.OtaError as e:
            self.state = "failed"
            if isinstance(e, ota.BundleRejected):
                o.clear_incoming()
            done(False, error=e.code, detail=e.detail)
            return
        except httpget.HttpError as e:
            self.state = "failed"
            if e.code == "http_status":  # e.g. the link expired: start again next time
                o.clear_incoming()
            done(False, error=e.code, detail=e.detail)
            return
        except Exception as e:  # flash errors and the like: never kill the app
            self.state = "failed"
            done(False, error="failed", detail="%s: %s" % (type(e).__name__, e))
            return
        self.state = "switched"
        done(True, {"version": m["version"], "previous": current, "slot": slot,
                    "bytes": args["size"], "deadline_s": args["deadline_s"]})
        for _ in range(PUBLISH_WAIT_S * 10):
            if published is None or published():
                break
            await asyncio.sleep(0.1)
        if self.on_switched is not None:
            self.on_switched(m["version"])
