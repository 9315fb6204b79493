# The gateway application: every part of a gateway assembled from its
# provisioned configuration and run as one asyncio program. The firmware's
# main.py (issue 6) runs it with the board's adapters; gateway/host/run.py
# runs it on a Linux-class gateway or a simulator with CPython adapters.
#
#   config (gateway/config.py) -> journal, clock, boot record, MQTT client,
#   uplink, gateway core, health sampler, command handler (gateway/commands.py)
#   and one task per paired instrument, driving its session.
#
# What is passed in (adapters, never created here):
#   make_client(cfg)       -> the MQTT client (with its last will), e.g.
#                             gateway.mqtt.MQTTClient
#   run_session(rt, inst)  -> a coroutine: one session with one instrument
#                             (gateway/ble_session.py, gateway/serial_session.py
#                             behind the board's radio and UARTs); returns when
#                             the session ends; errors are its own to count
#   reboot()               -> restart the gateway (machine.reset on a board)
#   link_probe, supply_probe (health), indicator, clock.
#
# Commands (docs/protocol.md `cmd`): apply_config runs a trial (the uplink
# must come back up with the new settings before the deadline, or the old
# config is restored and the result says `rolled_back`), sync_now wakes the
# instruments' sessions, set_time corrects the clock, reboot answers first
# and restarts after `delay_ms`, diagnostics reports without secrets.
# ota (docs/protocol.md "OTA") is delegated to the `ota_agent` passed in (the
# board's firmware/board/ota_agent.py): the Runtime only registers the op's
# args, hands them over and publishes the result the agent gives back later;
# without an agent the op is `unknown_op`.
import asyncio
import gc

from gateway import protocol
from gateway.app import Gateway
from gateway.bootinfo import BootInfo
from gateway.clock import GatewayClock
from gateway.commands import (
    CommandError,
    CommandHandler,
    ConfigTrial,
    apply_config_op,
    conclude_trial,
    resume_at_boot,
)
from gateway.config import ConfigStore, redacted
from gateway.health import HealthSampler
from gateway.indicator import Indicator
from gateway.journal import Journal
from gateway.uplink import Uplink

TRIAL_MS = 120000  # a new config has two minutes to bring the uplink back
SYNC_EVERY_MS = 900000  # instruments with a memory are read every 15 minutes
RETRY_MS = 30000  # after a session that ended, before trying again


def uplink_kwargs(cfg):
    up = cfg["uplink"]
    return {"window": up["window"], "resend_after_ms": up["resend_after_s"] * 1000,
            "backoff_min_ms": up["backoff_min_s"] * 1000,
            "backoff_max_ms": up["backoff_max_s"] * 1000,
            "heartbeat_ms": up["heartbeat_s"] * 1000,
            "clock_slew_ms": cfg["clock"]["slew_ms"]}


class Runtime:
    def __init__(self, state_dir, make_client, fw="0.0.0", clock=None, indicator=None,
                 reset_cause=None, run_session=None, reboot=None, link_probe=None,
                 supply_probe=None, trial_ms=TRIAL_MS, sync_every_ms=SYNC_EVERY_MS,
                 retry_ms=RETRY_MS, ota_agent=None):
        self.state_dir = state_dir
        self.fw = fw
        self.store = ConfigStore(state_dir)
        cfg = self.store.load()  # ConfigError: not provisioned or bad; the caller shows it
        self.cfg = cfg
        self.clock = clock or GatewayClock()
        self.indicator = indicator or Indicator()
        self.boot = BootInfo(state_dir, self.clock.now_ms(), reset_cause)
        j = cfg["journal"]
        self.journal = Journal(state_dir + "/journal", capacity_bytes=j["capacity_bytes"],
                               health_share=j["health_share"])
        self.client = make_client(cfg)
        self.uplink = Uplink(self.journal, self.client, cfg["unit"], cfg["gateway"], self.clock,
                             self.indicator, birth=self.birth, **uplink_kwargs(cfg))
        self.uplink.boot = self.boot.boots
        self.core = Gateway(self.journal, self.uplink, self.clock, self.indicator)
        self.health = HealthSampler(self.journal, self.uplink, self.clock,
                                    link_probe=link_probe, supply_probe=supply_probe,
                                    alarms=self.core.alarms, bootinfo=self.boot,
                                    errors=self.core.errors)
        self.uplink.heartbeat = self.health.payload
        self.uplink.offline_heartbeat = self.health.journal_sample
        self.commands = CommandHandler(state_dir, self, self.clock)
        self.uplink.on_command = self._on_command
        self.run_session = run_session  # (runtime, instrument config) -> coroutine
        self.reboot_fn = reboot
        self.ota_agent = ota_agent  # .start(args, done, published) -> "pending" or None
        self.trial_ms = trial_ms
        self.sync_every_ms = sync_every_ms
        self.retry_ms = retry_ms
        self.trial = None
        self._trial_connects = 0
        self._outbox = []  # results waiting for the link
        self._wake_sync = {}  # addr -> asyncio.Event
        self._inst_tasks = {}  # addr -> task
        self._stop = asyncio.Event()
        self.reboot_requested = False
        self._reboot_task = None
        if self.store.rolled_back_at_boot is not None:
            self.health.last_error = "config_rolled_back_at_boot"
            self.indicator.error("config", "config %s rolled back at boot"
                                 % self.store.rolled_back_at_boot)
        first = resume_at_boot(self.commands, self.store)
        if first is not None:
            self._outbox.append(first)

    # --- what the fleet sees ------------------------------------------------------
    def birth(self):
        insts = [{"addr": i["addr"], "type": i["profile"], "kind": i["kind"]}
                 for i in self.cfg["instruments"]]
        j = self.journal
        return protocol.birth_payload(self.fw, self.cfg["version"], self.boot.boots,
                                      self.boot.reason, insts,
                                      {"depth": j.depth, "bytes": j.bytes_used, "jid": j.jid},
                                      self.clock.now_ms())

    # --- commands (the ops object of CommandHandler) ------------------------------
    def _on_command(self, payload):
        result = self.commands.handle(payload, self.clock.now_ms())
        if result is not None and self.commands.reboot_in_ms is not None:
            self._reboot_task = asyncio.create_task(
                self._reboot_later(self.commands.reboot_in_ms))
        return result

    def apply_config(self, args):
        cfg = apply_config_op(self.store, args)  # CommandError bad_args names the field
        self._trial_connects = self.uplink.stats["connects"]
        dropped = self._apply(cfg)
        if not dropped:
            # Same broker and credentials: the session in place proves them.
            self._trial_connects -= 1
        self.trial = ConfigTrial(self.clock.now_ms() + self.trial_ms)
        return "pending"

    def sync_now(self, args):
        known = [i["addr"] for i in self.cfg["instruments"]]
        wanted = args.get("instruments") or known
        started = [a for a in wanted if a in known]
        for a in started:
            ev = self._wake_sync.get(a)
            if ev is not None:
                ev.set()
        return {"started": started, "unknown": [a for a in wanted if a not in known]}

    def set_time(self, args):
        return {"correction_ms": self.clock.correct(args["time"])}

    def reboot(self, args):
        return {"in_ms": args.get("delay_ms", 2000)}

    def ota(self, args):
        if self.ota_agent is None:
            raise CommandError("unknown_op", "op ota not supported by this gateway")
        if self.ota_agent.start(args, self._ota_done, self._outbox_empty) is None:
            raise CommandError("busy", "an update is already running")
        return "pending"

    def _ota_done(self, ok, result=None, error=None, detail=None):
        # The agent's answer: finish the pending `ota` command, publish it.
        cid = self.commands.pending("ota")  # one update runs at a time
        if cid is not None:
            payload = self.commands.finish(cid, ok, result, error, detail)
            if payload is not None:
                self._outbox.append(payload)

    def _outbox_empty(self):
        return not self._outbox

    def diagnostics(self, _args):
        j = self.journal
        errors = {}  # type: dict
        for (addr, reason), n in self.core.errors.items():
            errors.setdefault(str(addr), {})[reason] = n
        free = getattr(gc, "mem_free", None)
        return {
            "fw": self.fw, "cfg": self.cfg["version"], "config": redacted(self.cfg),
            "boot": {"count": self.boot.boots, "reason": self.boot.reason,
                     "unexpected": self.boot.unexpected, "last_crash": self.boot.last_crash},
            "journal": {"jid": j.jid, "depth": j.depth, "bytes": j.bytes_used,
                        "acked": j.acked, "recovery": j.recovery},
            "uplink": self.uplink.stats, "commands": self.commands.stats,
            "alarms": sorted(k for k, v in self.core.alarms.items() if v),
            "errors": errors,
            "clock": {"now": self.clock.now_ms(), "synced": self.clock.synced,
                      "offset_ms": self.clock.offset_ms},
            "heap_free": free() if free else None,
            "instruments": self.health.instruments,
        }

    # --- config ---------------------------------------------------------------------
    def _apply(self, cfg):
        """Put a config in force; True when the uplink had to reconnect."""
        self.cfg = cfg
        self.uplink.clock_slew_ms = cfg["clock"]["slew_ms"]
        dropped = self.uplink.reconfigure(cfg["uplink"])
        self._start_instruments()
        return dropped

    def _poll_trial(self):
        if self.trial is None:
            return
        ok = self.uplink.connected and self.uplink.stats["connects"] > self._trial_connects
        outcome = self.trial.poll(self.clock.now_ms(), ok)
        if outcome is None:
            return
        self.trial = None
        result = conclude_trial(self.commands, self.store, outcome)
        if outcome == "rolled_back":
            self._apply(self.store.cfg)
        if result is not None:
            self._outbox.append(result)

    # --- instruments ------------------------------------------------------------------
    def _start_instruments(self):
        if self.run_session is None:
            return
        wanted = {i["addr"]: i for i in self.cfg["instruments"]}
        for addr in list(self._inst_tasks):
            if addr not in wanted:  # unpaired by a new config
                self._inst_tasks.pop(addr).cancel()
                self._wake_sync.pop(addr, None)
        for addr, inst in wanted.items():
            if addr not in self._inst_tasks:
                self._wake_sync[addr] = asyncio.Event()
                self._inst_tasks[addr] = asyncio.create_task(self._instrument_loop(inst))

    async def _instrument_loop(self, inst):
        """Run the instrument's session again and again: after it ends, wait
        for sync_now, or the next scheduled sync (a retry after an error)."""
        addr = inst["addr"]
        while not self._stop.is_set():
            ev = self._wake_sync[addr]
            ev.clear()
            try:
                await self.run_session(self, inst)
                wait_ms = self.sync_every_ms
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never lets one instrument stop the gateway
                self.core.count_error(addr, "session_failed")
                self.indicator.error(addr, "session: %s" % type(e).__name__)
                wait_ms = self.retry_ms
            try:
                await asyncio.wait_for(ev.wait(), wait_ms / 1000)
            except asyncio.TimeoutError:
                pass

    # --- running -------------------------------------------------------------------
    async def _reboot_later(self, delay_ms):
        await asyncio.sleep(delay_ms / 1000)
        self.boot.mark_clean()
        self.reboot_requested = True
        if self.reboot_fn is not None:
            self.reboot_fn()
        self.stop()

    def stop(self):
        self._stop.set()
        self.uplink.stop()

    async def _supervise(self):
        while not self._stop.is_set():
            self._poll_trial()
            while self._outbox and self.uplink.connected:
                if not await self.uplink.publish_result(self._outbox[0]):
                    break
                self._outbox.pop(0)
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def run(self):
        """Until stop() (or a reboot command): the uplink, the supervisor and
        the instruments' sessions."""
        self._start_instruments()
        sup = asyncio.create_task(self._supervise())
        try:
            await self.uplink.run()
        finally:
            self._stop.set()
            for t in self._inst_tasks.values():
                t.cancel()
            await sup
            if not self.reboot_requested:
                self.boot.mark_clean()


def make_mqtt_client(cfg, ssl_context=None, client_class=None):
    """The MQTT client for a config: persistent session, the retained
    `offline` state as last will, the gateway's own credentials. With
    `uplink.tls` an SSL context must be given (the board's or the host's CA
    bundle), or it refuses to connect in clear. `client_class`: the project's
    client (default, the only one on a board) or a class with the same
    interface, e.g. gateway.host.mqtt_paho.PahoMQTTClient on a host."""
    if client_class is None:
        from gateway.mqtt import MQTTClient as client_class

    up = cfg["uplink"]
    if up["tls"] and ssl_context is None:
        raise ValueError("uplink.tls is on: give the TLS context (CA certificate) to use")
    port = up["broker_port"] or (8883 if up["tls"] else 1883)
    return client_class(cfg["gateway"], up["broker_host"], port,
                      username=up["username"] or cfg["gateway"], password=up["password"],
                      keepalive=up["keepalive_s"], clean_session=False,
                      will=(protocol.topic(cfg["unit"], cfg["gateway"], "state"),
                            protocol.LAST_WILL, 1, True),
                      ssl=ssl_context if up["tls"] else None)
