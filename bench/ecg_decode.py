"""ECG decoding speed as a multiple of real time: OpenBCI Cyton bytes ->
CytonParser -> StripAssembler -> Pan-Tompkins QRS detector -> reading, on
CPython and on the MicroPython Unix port with the gateway's 100 KB heap.

    .venv/bin/python -m bench.ecg_decode [seconds]

runs both (the second as `micropython -X heapsize=100k bench/ecg_decode.py`
with MICROPYPATH=<repository>). The stream is synthetic: 72 bpm on one
channel, 8 channels at 250 Hz, 33-byte packets fed in 256-byte UART reads.
Only the decoding is timed, not making the bytes.
"""

import gc
import math
import sys
import time

from device_drivers.cyton import SAMPLE_RATE, CytonParser, encode_packet, uv_to_counts
from device_drivers.ecg import StripAssembler, strip_reading

MPY = sys.implementation.name == "micropython"
BPM = 72
READ = 256  # bytes per UART read
BLOCK = 50  # packets made at a time (0.2 s)
HEAP = "100k"


def _beat(rr):  # type: (int) -> list[int]
    # one beat of rr samples, R at sample 90: P, Q, R, S, T as Gaussians (uV)
    out = []
    for k in range(rr):
        t = (k - 90) / SAMPLE_RATE * 1000.0  # ms from R
        v = 0.0
        for centre, amp, width in ((-160, 150, 22), (-28, -120, 8), (0, 1100, 9),
                                   (28, -250, 9), (260, 300, 45)):
            z = (t - centre) / width
            v += amp * math.exp(-0.5 * z * z)
        out.append(int(v))
    return out


def _block(first, beat, seed, out):  # type: (int, list[int], list[int], bytearray) -> None
    # the Cyton bytes of samples first.. into `out` (reused: no heap churn):
    # the ECG on channel 1 with 0.25 Hz wander and noise, noise elsewhere
    for j in range(len(out) // 33):
        k = first + j
        seed[0] = (1103515245 * seed[0] + 12345) & 0x7FFFFFFF
        noise = (seed[0] >> 16) % 41 - 20
        uv = beat[k % len(beat)] + 300 * math.sin(k * 0.00628) + noise
        counts = [noise * 40] * 8
        counts[1] = uv_to_counts(uv)
        out[33 * j:33 * j + 33] = encode_packet(k & 0xFF, counts)


def _ticks():  # type: () -> int
    # microseconds, from a wrapping counter on MicroPython: use _since()
    if MPY:
        return time.ticks_us()  # type: ignore[attr-defined]
    return time.perf_counter_ns() // 1000


def _since(t0):  # type: (int) -> float
    if MPY:
        return time.ticks_diff(time.ticks_us(), t0) / 1e6  # type: ignore[attr-defined]
    return (time.perf_counter_ns() // 1000 - t0) / 1e6


def run(seconds):  # type: (int) -> dict
    asm = StripAssembler(channel=1, lead="II")
    parser = CytonParser()
    beat = _beat(int(60 * SAMPLE_RATE / BPM + 0.5))
    seed = [1]
    spent = qrs = 0.0
    rates = []
    heap = 0
    block = bytearray(33 * BLOCK)
    view = memoryview(block)
    for first in range(0, seconds * SAMPLE_RATE, BLOCK):
        _block(first, beat, seed, block)
        t0 = _ticks()
        for i in range(0, len(block), READ):
            parser.feed(view[i:i + READ])
            for ev in parser:
                strip = asm.add(ev)
                if strip is not None:
                    t1 = _ticks()
                    rates.append(strip_reading(strip)["heart_rate"])
                    qrs += _since(t1)
                    strip = None
                    if MPY:  # not timed: the live heap after a strip
                        spent += _since(t0)
                        gc.collect()
                        heap = max(heap, gc.mem_alloc())  # type: ignore[attr-defined]
                        t0 = _ticks()
        spent += _since(t0)
    return {"seconds": seconds, "spent": spent, "qrs": qrs, "strips": len(rates),
            "rates": rates, "heap": heap, "packets": parser.packets, "lost": parser.lost}


def _line(name, r):  # type: (str, dict) -> str
    strips = r["strips"] or 1
    return "| %s | %.0fx | %.1f ms | %.1f ms | %s | %s |" % (
        name, r["seconds"] / r["spent"], 1000 * r["spent"] / strips,
        1000 * r["qrs"] / strips, sorted(set(r["rates"])),
        "%d KB" % (r["heap"] // 1024) if r["heap"] else "-")


def _micropython(seconds):  # type: (int) -> str
    # the same benchmark under the Unix port, as a child process
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    exe = Path(sys.executable).parent / "micropython"
    env = dict(os.environ, MICROPYPATH=str(repo))
    proc = subprocess.run([str(exe), "-X", "heapsize=" + HEAP, "bench/ecg_decode.py",
                           str(seconds)], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        return "micropython failed: " + proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def main():  # type: () -> None
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    if MPY:
        v = sys.implementation.version
        name = "MicroPython %d.%d.%d Unix port, %s heap" % (v[0], v[1], v[2], HEAP)
        print(_line(name, run(seconds)))
        return
    print("ECG decoding: %d s of Cyton stream (8 channels, 250 Hz, %d bpm), strips of 10 s"
          % (seconds, BPM))
    print("| runtime | x real time | per 10 s strip | of which QRS + reading | heart rates |"
          " live heap |")
    print("|---|---|---|---|---|---|")
    print(_line("CPython %s" % sys.version.split()[0], run(seconds)))
    print(_micropython(seconds))
    print("command: .venv/bin/python -m bench.ecg_decode %d" % seconds)


if __name__ == "__main__":
    main()
