# The update path of the running app (docs/firmware.md, "OTA sequence"): it
# installs a bundle that has been received whole, and watches a version on
# trial. The transport that fills `ota_incoming.bin` (HTTP range requests or
# MQTT chunks through ota.Receiver) is not here; whatever it is, it leaves the
# bundle and its meta file (size, SHA-256) on flash, resumable, and this
# module takes over from there:
#   ready()    a whole bundle waits (its size reached; meta says which)
#   install()  transport hash, stage (signature, target, version, every
#              file's hash, read back), switch, then free the download; the
#              caller resets the board (boot.py runs the new slot). Freed only
#              after the switch: a power cut between the two would otherwise
#              lose a staged update that nothing points to. A bundle whose
#              version already runs (a cut after the switch) is just freed;
#              none is installed while a version is on trial
#   tick()     the Trial of a version on trial: confirmed after it has been
#              healthy long enough, rolled back (the caller resets) if not
# Runs in safe mode too: it is how a crash-looping gateway gets a fix.
# A refused bundle is removed (it would be refused again at every boot) and
# its code kept in `last_error` for the heartbeat.
import json

import ota


def running_slot(path_list):
    """The app slot this firmware runs from (boot.py put it first), or None."""
    for p in path_list[:1]:
        if ota.slot_name(p) is not None:
            return p
    return None


class Updater:
    def __init__(self, root, running, trusted, hold_ms=180000):
        self.ota = ota.Ota(root)
        self.running = running
        self.trusted = trusted
        self.last_error = None
        self.installed = None  # version switched to, waiting for the reset
        self.trial = ota.Trial(self.ota, running, hold_ms) if running else None

    def _meta(self):
        try:
            with open(self.ota.incoming_meta) as f:
                m = json.loads(f.read())
            return m if isinstance(m, dict) and isinstance(m.get("size"), int) else None
        except (OSError, ValueError):
            return None

    def ready(self):
        m = self._meta()
        if m is None:
            return False
        st = self.ota.state()
        if st is not None and st["pending"]:
            return False  # after the trial
        st = ota._stat(self.ota.fs, self.ota.incoming)
        return st is not None and st[6] == m["size"]

    def install(self, now_ms=None):
        """Stage and switch to the waiting bundle; its version, or None when
        it was refused or cannot go in now (a version on trial: `busy`)."""
        m = self._meta()
        if not self.trusted:
            self.last_error = "ota_no_trusted_keys"
            return None
        try:
            rx = self.ota.receiver(m["size"], m.get("sha256"))
            path = rx.finish()
            f = self.ota.fs.open(path, "rb")
            try:
                version = ota.parse_manifest(ota.read_head(f)[0])["version"]
            finally:
                f.close()
            st = self.ota.state()
            if st is not None and self.ota.slot_version(st["active"]) == version:
                self.ota.clear_incoming()  # already running it
                return None
            manifest = self.ota.stage(path, self.trusted)
            self.ota.switch(now_ms)
            self.ota.clear_incoming()
        except ota.UpdateStateError as e:
            self.last_error = "ota_" + e.code
            if e.code != "busy":
                self.ota.clear_incoming()
            return None
        except ota.OtaError as e:
            self.last_error = "ota_" + e.code
            self.ota.clear_incoming()
            return None
        self.installed = manifest["version"]
        return self.installed

    def tick(self, healthy, uptime_ms, now_ms=None):
        """None, "confirmed" or "rollback" (reset the board)."""
        if self.trial is None:
            return None
        return self.trial.tick(healthy, uptime_ms, now_ms)

    def status(self):
        return self.ota.status()
