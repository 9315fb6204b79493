"""Run a real time-series server for tests: VictoriaMetrics.

No InfluxDB 2 server is packaged for Debian; Debian's `victoria-metrics`
accepts exactly what `influxdb-client` sends to `/api/v2/write` (gzip too)
and gives it back through `/api/v1/export`. Like devharness/broker.py does
for Mosquitto, `VictoriaMetrics` starts one on a free loopback port with its
own data directory, and can be stopped, restarted on the same port (data
kept), or frozen with SIGSTOP to play a server that accepts connections and
never answers.

Facts this relies on (../shared/design/FIELD-NOTES.md): the default 30 s
search latency offset hides fresh data, so it is 1 s here and `export`
forces a flush first; an InfluxDB line `m,tags f1=1,f2=2` is stored as the
series `m_f1` and `m_f2` with the same tags; `client.health()` reports fail
on it (use `ping()`, or `healthy()` here).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devharness.ports import free_port, wait_for_port
from devharness.processes import spawn, terminate

BINARY = "victoria-metrics"


def victoria_available() -> bool:
    return shutil.which(BINARY) is not None


@dataclass
class VictoriaMetrics:
    """A victoria-metrics process with its data in `workdir`; restartable in place."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "victoria-metrics.log"

    def start(self) -> VictoriaMetrics:
        binary = shutil.which(BINARY) or f"/usr/bin/{BINARY}"
        self.proc = spawn([binary, f"-storageDataPath={self.workdir / 'data'}",
                           f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
                           "-search.latencyOffset=1s", "-loggerLevel=WARN"], self.log_path)
        try:
            wait_for_port(self.port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"victoria-metrics did not start; see {self.log_path}") from None
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM; a frozen process is thawed first)."""
        self.resume()
        terminate(self.proc, timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        if self.proc is not None and not self.paused:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False

    # --- reading back ---
    def _get(self, path: str, params: list[tuple[str, str]] | None = None,
             timeout: float = 5.0) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=timeout) as resp:
            body: bytes = resp.read()
            return body

    def healthy(self) -> bool:
        try:
            return self._get("/health", timeout=1.0).strip() == b"OK"
        except OSError:
            return False

    def export(self, *matches: str) -> list[dict[str, Any]]:
        """Every stored series matching the selectors (`match[]`), e.g.
        `{__name__=~"reading_.*"}`: dicts with `metric` (name and labels),
        `values` and `timestamps` (unix ms), as /api/v1/export gives them.
        Fresh samples are flushed first so that they are searchable; the time
        range is everything up to a year ahead (the default ends now, and a
        gateway's clock may run ahead)."""
        self._get("/internal/force_flush")
        end = int(time.time()) + 366 * 86400
        body = self._get("/api/v1/export", [("match[]", m) for m in matches]
                         + [("start", "0"), ("end", str(end))])
        return [json.loads(row) for row in body.splitlines() if row.strip()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
