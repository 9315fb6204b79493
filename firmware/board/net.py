# Network bring-up from the config's `network` section (gateway/config.py):
#   wifi      network.WLAN station: connect to wifi_ssid, wait for an address
#   ppp       a cellular modem on a UART (SIM7600-class): AT dialog (APN, dial
#             *99#), then MicroPython's network.PPP over that UART, with PAP
#             when apn_user is set
#   ethernet  network.LAN with the board's PHY pins (ETH below; none by default)
#   host      nothing to bring up (the Unix port, a Linux-class gateway)
# `up()` tries once within a deadline; `keep()` runs for the app's whole life
# and brings the link back when it drops (the uplink reconnects by itself
# once there is a route). `probe()` is the health heartbeat's link probe:
# (link type, signal dBm or None). Secrets are never printed.
#
# Board pins: MODEM (UART id, tx, rx, baud, power key pin or None) and ETH
# are the board's wiring; change them here for another board (docs/
# virtual_gateway.md, "Real board"). Board only (network, machine); `host`
# mode needs neither and is what the Unix port uses.
import asyncio

from ticks import ticks_diff, ticks_ms

MODEM = {"uart": 1, "tx": 27, "rx": 26, "baud": 115200, "pwrkey": 4}
ETH = None  # e.g. {"phy_type": "LAN8720", "phy_addr": 1, "mdc": 23, "mdio": 18}
CHECK_MS = 10000


class NetError(Exception):
    pass


def _ms():
    return ticks_ms()


def _since(t):
    return ticks_diff(ticks_ms(), t)


class Net:
    def __init__(self, cfg, indicator):
        self.cfg = cfg
        self.mode = cfg["mode"]
        self.indicator = indicator
        self.nic = None
        self._uart = None
        self.ups = 0

    def connected(self):
        if self.mode == "host":
            return True
        return self.nic is not None and self.nic.isconnected()

    def probe(self):
        if self.mode == "wifi" and self.nic is not None:
            try:
                return "wifi", self.nic.status("rssi")
            except Exception:
                return "wifi", None
        return self.mode, None

    async def up(self, timeout_ms=60000):
        """Bring the link up; True when connected within timeout_ms."""
        if self.connected():
            return True
        try:
            if self.mode == "wifi":
                await self._wifi(timeout_ms)
            elif self.mode == "ppp":
                await self._ppp(timeout_ms)
            elif self.mode == "ethernet":
                await self._ethernet(timeout_ms)
        except (OSError, NetError) as e:
            self.indicator.error("network", "%s: %s" % (self.mode, e))
            return False
        ok = self.connected()
        if ok:
            self.ups += 1
        else:
            self.indicator.error("network", "%s: not connected in %d s"
                                 % (self.mode, timeout_ms // 1000))
        return ok

    async def keep(self):
        """Forever: bring the link back when it drops."""
        while True:
            if not self.connected():
                await self.up()
            await asyncio.sleep(CHECK_MS / 1000)

    async def _wait(self, timeout_ms):
        t = _ms()
        while not self.connected() and _since(t) < timeout_ms:
            await asyncio.sleep(0.25)

    async def _wifi(self, timeout_ms):
        import network

        if self.nic is None:
            self.nic = network.WLAN(network.STA_IF)
        self.nic.active(True)
        try:
            self.nic.disconnect()
        except OSError:
            pass
        self.nic.connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"] or "")
        await self._wait(timeout_ms)

    async def _ethernet(self, timeout_ms):
        import network

        if ETH is None:
            raise NetError("ethernet: set the PHY pins (ETH in net.py) for this board")
        if self.nic is None:
            import machine

            self.nic = network.LAN(mdc=machine.Pin(ETH["mdc"]), mdio=machine.Pin(ETH["mdio"]),
                                   phy_type=getattr(network, "PHY_" + ETH["phy_type"]),
                                   phy_addr=ETH["phy_addr"])
        self.nic.active(True)
        await self._wait(timeout_ms)

    # --- cellular --------------------------------------------------------------
    async def _ppp(self, timeout_ms):
        import machine
        import network

        if self.nic is not None:
            try:
                self.nic.disconnect()
                self.nic.active(False)
            except OSError:
                pass
            self.nic = None
        if self._uart is None:
            await self._power_on(machine)
            self._uart = machine.UART(MODEM["uart"], baudrate=MODEM["baud"], tx=MODEM["tx"],
                                      rx=MODEM["rx"], timeout=0, rxbuf=1024)
        modem = Modem(self._uart)
        await modem.attach(self.cfg["apn"])
        ppp = network.PPP(self._uart)
        ppp.active(True)
        user = self.cfg["apn_user"]
        if user:
            ppp.connect(security=network.PPP.SEC_PAP, user=user,
                        key=self.cfg["apn_password"] or "")
        else:
            ppp.connect()
        self.nic = ppp
        await self._wait(timeout_ms)

    async def _power_on(self, machine):
        pin = MODEM["pwrkey"]
        if pin is None:
            return
        key = machine.Pin(pin, machine.Pin.OUT)
        key.value(1)
        await asyncio.sleep(0.5)  # SIM7600: PWRKEY high for 500 ms, then boot
        key.value(0)
        await asyncio.sleep(5)


class Modem:
    """The AT dialog before PPP: is the modem there, set the APN, dial."""

    def __init__(self, uart):
        self.uart = uart
        self._r = asyncio.StreamReader(uart)
        self._w = asyncio.StreamWriter(uart, {})  # type: ignore[call-arg, arg-type]

    async def command(self, cmd, expect=b"OK", timeout_ms=3000):
        self._w.write(cmd + b"\r")
        await self._w.drain()
        got = b""
        t = _ms()
        while _since(t) < timeout_ms:
            try:
                chunk = await asyncio.wait_for(self._r.read(128), 0.2)
            except asyncio.TimeoutError:
                continue
            got += chunk or b""
            if expect in got:
                return got
            if b"ERROR" in got or b"NO CARRIER" in got:
                break
        raise NetError("modem: %s answered %r" % (cmd.split(b"=")[0].decode(), got[-40:]))

    async def attach(self, apn):
        for _ in range(10):  # the modem may still be booting
            try:
                await self.command(b"AT", timeout_ms=1000)
                break
            except NetError:
                await asyncio.sleep(1)
        await self.command(b"ATE0")
        await self.command(b'AT+CGDCONT=1,"IP","' + apn.encode() + b'"')
        await self.command(b"ATD*99#", expect=b"CONNECT", timeout_ms=30000)
