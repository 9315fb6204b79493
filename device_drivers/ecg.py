# ECG strips and heart rate: Cyton samples -> fixed-length strips with quality
# flags -> R peaks (Pan-Tompkins QRS detector) -> a reading; no I/O.
#
# Theory of operation
# -------------------
# * StripAssembler takes the events of a device_drivers.cyton.CytonParser
#   (add()), or bare counts and gap lengths (push(), gap()), for one channel
#   (one lead) and cuts them into back-to-back strips of `seconds` (default
#   10 s). Samples are kept as int16 microvolts around the strip's first
#   sample in an array('h'): 5 KB for 10 s at 250 Hz, exact to 1 uV (a
#   count is 0.02 uV at gain 24, far below electrode noise), and the same
#   array is what the reading uploads. A strip wandering more than 32 mV
#   from its first sample is clipped and flagged. Lost packets (Gap events)
#   are filled by linear interpolation so the strip keeps its time base, and
#   every filled run is listed as [index, count]; a loss of over 1 s ends the
#   strip instead. A strip also counts railed samples (|count| at or above
#   rail_fraction of full scale: an electrode off or the amplifier
#   saturated), clipped ones and Resync events.
# * QRSDetector is the detector of Pan and Tompkins (IEEE Trans. Biomed. Eng.
#   32(3), 1985), written from the paper's description, one sample at a time
#   (input: integer microvolts), in integer arithmetic as the paper's was, so
#   it finds the same peaks on CPython, on the Unix port and on an ESP32's
#   single-precision floats:
#     1. band-pass about 5-16 Hz from integer moving sums, as in the paper:
#        low-pass = two cascaded moving sums of one mains period (20 ms at
#        50 Hz: 5 samples at 250 Hz, which also nulls 50 and 100 Hz mains);
#        high-pass = the signal delayed by half a 160 ms window minus that
#        window's moving average (the paper's 32 samples at 200 Hz);
#     2. five-point derivative; 3. squaring (the derivative is clipped so
#        the square and its sum stay below 2^30, the small-int range of an
#        ESP32); 4. moving-window integration over 150 ms;
#     5. fiducial marks: a peak of the integrated signal is taken when the
#        signal falls to half of it (or 200 ms later); its R wave is the
#        largest band-passed sample in the integration window before it,
#        less the band-pass delay (the filters have linear phase);
#     6. adaptive thresholds on both signals, from running signal and noise
#        peak estimates (SPK = PEAK/8 + 7/8 SPK, NPK likewise; THRESHOLD1 =
#        NPK + (SPK - NPK)/4, THRESHOLD2 = THRESHOLD1/2), halved while the
#        rhythm is irregular; a 2 s learning phase sets the estimates;
#     7. 200 ms refractory period; up to 360 ms after a QRS, a peak whose
#        maximal slope is under half that QRS's is a T wave;
#     8. RR AVERAGE1 (last 8 RR) and AVERAGE2 (last 8 RR within 92-116 % of
#        it); no QRS within 166 % of AVERAGE2 -> search back for the largest
#        peak above THRESHOLD2 since the last QRS (SPK then moves by 1/4).
#   Additions to the paper, for a unit on noisy skin: a peak whose
#   band-passed amplitude is under min_qrs_uv (100 uV, about a 0.16 mV R
#   wave) is never a QRS, so a flat or noise-only strip gives no beats; one
#   over max_qrs_uv (5 mV) is an artefact (electrode pop, movement) and
#   ignored altogether; after 8 irregular beats in a row AVERAGE2 takes
#   AVERAGE1 (the paper keeps the stale average, and a rate change never
#   settles); with no QRS for 3 s the learning phase restarts. At the end of
#   the samples the filters are flushed with the mean of the last mains
#   period held, so a QRS in the last 100 ms is still seen.
# * detect_qrs() runs a detector over a strip; heart_rate() is 60 / mean RR;
#   strip_reading() makes the reading dict (keys: see there).
#
# Portable: MicroPython (ESP32, Unix port) and CPython. Types in comments and
# no docstrings: compiled from source in a 100 KB heap, annotations and
# docstrings cost memory (this module needs about 60 KB to compile there;
# precompiled with mpy-cross it needs none).
from array import array

from device_drivers.cyton import FULL_SCALE, SAMPLE_RATE, Gap, Resync, Sample, uv_per_count

TYPE_CHECKING = False  # mypy takes it as True: imports for the type comments only
if TYPE_CHECKING:
    from typing import Any  # noqa: F401

DEFAULT_SECONDS = 10
DEFAULT_LEAD = "II"
MIN_QRS_UV = 100  # band-passed amplitude; a QRS keeps about 0.6 of its R wave
MAX_QRS_UV = 5000
RAIL_FRACTION = 0.9  # |count| >= 90 % of full scale: railed (as the OpenBCI GUI)
HEART_RATE_RANGE = (20, 250)  # per minute; outside -> suspect
_SMALL = 1 << 30  # ESP32 small ints: every sum stays below this
_MAX_GAPS = 32  # gap runs listed per strip (all are counted)


class QRSDetector:
    # push(uv) one sample after another; R-peak sample indices are appended
    # to `peaks` as they are decided, about 0.3 s late (a search back up to
    # 166 % of an RR interval late); finish() once at the end decides what
    # is pending and returns `peaks`.

    def __init__(self, sample_rate=SAMPLE_RATE, min_qrs_uv=MIN_QRS_UV, max_qrs_uv=MAX_QRS_UV,
                 mains_hz=50):
        # type: (int, float, float, int) -> None
        fs = sample_rate
        self.sample_rate = fs
        m = max(1, int(fs / mains_hz + 0.5))  # low-pass moving sums
        hl = int(0.16 * fs) | 1  # high-pass window, odd: a whole-sample delay
        n = max(1, int(0.15 * fs + 0.5))  # integration window
        gain = m * m * hl
        shift = 0
        while 2 << shift <= gain:
            shift += 1
        self._shift = shift  # band-pass gain / 2^shift is in [1, 2)
        self._xmax = _SMALL // (2 * gain)  # input clamp: the sums stay small
        dmax = 1
        while (dmax + 1) * (dmax + 1) * n < _SMALL:
            dmax += 1
        self._dmax = dmax
        self._m, self._hl, self._n = m, hl, n
        self._hd = hl // 2
        self._delay = m - 1 + hl // 2  # band-pass delay, samples
        self._refr = int(0.2 * fs + 0.5)  # refractory; also the latest a peak is taken
        self._twave = int(0.36 * fs + 0.5)
        size = 1
        while size < self._refr + n + 4:
            size <<= 1
        self._mask = size - 1
        self._bp = array("i", bytes(4 * size))  # band-passed, by sample index
        self._floor = int(min_qrs_uv * gain / (1 << shift))
        self._ceiling = int(max_qrs_uv * gain / (1 << shift))
        self._i = self._x0 = 0
        self._r1 = [0] * m  # low-pass rings and sums
        self._r2 = [0] * m
        self._k1 = self._s1 = self._s2 = 0
        self._rl = [0] * hl  # high-pass ring and sum
        self._kl = self._sl = 0
        self._b1 = self._b2 = self._b3 = self._b4 = 0  # band-passed history
        self._rn = [0] * n  # integration ring and sum
        self._kn = self._sn = 0
        self._rising = False  # peak tracking on the integrated signal
        self._pk = self._pk_at = self._trough = 0
        self.peaks = []  # type: list[int]
        self._learn = []  # type: list[tuple] | None
        self._learn_end = 2 * fs + self._delay
        self._spki = self._npki = self._spkf = self._npkf = 0
        self._last_r = -1
        self._last_slope = 0
        self._best = None  # type: tuple | None
        self._rr1 = []  # type: list[int]
        self._rr2 = []  # type: list[int]
        self._irregular = 0  # irregular beats in a row
        self._missed = int(1.66 * fs)  # until two beats give an RR

    def push(self, x):  # type: (int) -> None
        i = self._i
        if i == 0:
            self._x0 = x
        x -= self._x0
        xmax = self._xmax
        if x > xmax:
            x = xmax
        elif x < -xmax:
            x = -xmax
        # low-pass: two cascaded moving sums of m samples
        k = self._k1
        r1 = self._r1
        s1 = self._s1 + x - r1[k]
        r1[k] = x
        r2 = self._r2
        lp = self._s2 + s1 - r2[k]
        r2[k] = s1
        self._s1 = s1
        self._s2 = lp
        k += 1
        self._k1 = 0 if k == self._m else k
        # high-pass: lp delayed by hl // 2 minus the moving sum of hl lp values
        hl = self._hl
        rl = self._rl
        j = self._kl
        sl = self._sl + lp - rl[j]
        rl[j] = lp
        self._sl = sl
        bp = (hl * rl[j - self._hd] - sl) >> self._shift  # a negative index wraps
        j += 1
        self._kl = 0 if j == hl else j
        # derivative, squaring, moving-window integration
        d = 2 * bp + self._b1 - self._b3 - 2 * self._b4
        self._b4 = self._b3
        self._b3 = self._b2
        self._b2 = self._b1
        self._b1 = bp
        dmax = self._dmax
        if d > dmax:
            d = dmax
        elif d < -dmax:
            d = -dmax
        d *= d
        q = self._kn
        rn = self._rn
        v = self._sn + d - rn[q]
        rn[q] = d
        self._sn = v
        q += 1
        self._kn = 0 if q == self._n else q
        self._bp[i & self._mask] = bp
        # peaks of the integrated signal
        if self._rising:
            if v > self._pk:
                self._pk = v
                self._pk_at = i
            elif 2 * v < self._pk or i - self._pk_at >= self._refr:
                self._rising = False
                self._trough = v
                self._candidate(self._pk_at, self._pk)
        elif v < self._trough:
            self._trough = v
        elif v > self._trough:
            self._rising = True
            self._pk = v
            self._pk_at = i
        self._i = i + 1
        if i == self._learn_end:
            self._end_learning()
        elif self._learn is None and i - self._delay - self._last_r > 3 * self.sample_rate \
                and i - self._learn_end > 3 * self.sample_rate:
            self._learn = []  # no QRS for 3 s: learn again
            self._learn_end = i + 2 * self.sample_rate

    def finish(self):  # type: () -> list[int]
        end = self._i
        if end:
            hold = self._s1 // self._m + self._x0
            for _ in range(self._delay + self._n + self._refr):
                self.push(hold)
        if self._rising and self._pk > 0:
            self._candidate(self._pk_at, self._pk)
        if self._learn is not None:
            self._end_learning()
        if self._best and self._i - self._delay - self._last_r > self._missed:
            self._accept(self._best, 2)
        peaks = self.peaks
        while peaks and peaks[-1] >= end:
            peaks.pop()
        return peaks

    def _candidate(self, p, peaki):  # type: (int, int) -> None
        # A peak of the integrated signal at sample p: its energy came from
        # band-passed samples p-n-1 .. p-2. Find the largest of them and the
        # steepest slope there.
        bp = self._bp
        mask = self._mask
        lo = max(1, p - self._n - 1)
        best = -1
        at = lo
        slope = 0
        prev = bp[(lo - 1) & mask]
        for j in range(lo, p - 1):
            b = bp[j & mask]
            if abs(b) > best:
                best = abs(b)
                at = j
            if abs(b - prev) > slope:
                slope = abs(b - prev)
            prev = b
        if best > self._ceiling:
            return  # an artefact: neither a beat nor noise
        c = (max(0, at - self._delay), peaki, best, slope)
        if self._learn is None:
            self._classify(c)
        elif len(self._learn) < 64:
            self._learn.append(c)

    def _end_learning(self):  # type: () -> None
        learned = self._learn or []
        self._learn = None
        self._spki = self._spkf = self._npki = self._npkf = 0
        for c in learned:
            if self._floor <= c[2] and c[1] > self._spki:
                self._spki = c[1]
                self._spkf = c[2]
        for c in learned:
            self._classify(c)

    def _classify(self, c):  # type: (tuple) -> None
        r, peaki, peakf, slope = c
        last = self._last_r
        if last >= 0 and r - last > self._missed and self._best:
            self._accept(self._best, 2)  # search back
            last = self._last_r
        if last >= 0 and r - last < self._refr:
            return  # refractory: not a beat, and not noise either
        thr_i = self._npki + ((self._spki - self._npki) >> 2)
        thr_f = self._npkf + ((self._spkf - self._npkf) >> 2)
        if self._irregular:
            thr_i >>= 1
            thr_f >>= 1
        t_wave = last >= 0 and r - last < self._twave and 2 * slope < self._last_slope
        ok = peakf >= self._floor and not t_wave
        if ok and peaki > thr_i and peakf > thr_f:
            self._accept(c, 3)
            return
        self._npki += (peaki - self._npki) >> 3
        self._npkf += (peakf - self._npkf) >> 3
        if ok and peaki > thr_i >> 1 and peakf > thr_f >> 1:
            if self._best is None or peaki > self._best[1]:
                self._best = c

    def _accept(self, c, shift):  # type: (tuple, int) -> None
        # shift 3: SPK moves by 1/8; 2 (found by search back): by 1/4
        r, peaki, peakf, self._last_slope = c
        self._spki += (peaki - self._spki) >> shift
        self._spkf += (peakf - self._spkf) >> shift
        if self._last_r >= 0:
            self._rr(r - self._last_r)
        self._last_r = r
        self._best = None
        self.peaks.append(r)

    def _rr(self, rr):  # type: (int) -> None
        rr1 = self._rr1
        rr2 = self._rr2
        rr1.append(rr)
        avg = sum(rr2) // len(rr2) if rr2 else rr
        if avg * 92 // 100 <= rr <= avg * 116 // 100:
            rr2.append(rr)
            self._irregular = 0
        else:
            self._irregular += 1
            if self._irregular >= 8:  # the rhythm changed: follow it
                rr2[:] = rr1
        del rr1[:-8]
        del rr2[:-8]
        self._missed = sum(rr2) // len(rr2) * 166 // 100


def detect_qrs(samples, sample_rate=SAMPLE_RATE, min_qrs_uv=MIN_QRS_UV):
    # type: (Any, int, float) -> list[int]
    # R-peak sample indices of a strip of integer microvolts
    det = QRSDetector(sample_rate, min_qrs_uv)
    push = det.push
    for v in samples:
        push(v)
    return det.finish()


def heart_rate(peaks, sample_rate=SAMPLE_RATE):  # type: (list[int], int) -> int | None
    # beats per minute from R-peak indices (60 / mean RR); None below 2 peaks
    if len(peaks) < 2:
        return None
    return int(60.0 * sample_rate * (len(peaks) - 1) / (peaks[-1] - peaks[0]) + 0.5)


# --- strips -----------------------------------------------------------------


class Strip:
    # A finished strip of one lead. samples: array('h') of microvolts around
    # offset_uv (uV = offset_uv + samples[k]; a memoryview of one when ended
    # by flush()); expected: samples a full strip has; missing: samples
    # filled in; gaps: [[index, count], ...] of the filled runs (32 at most
    # listed); railed: samples at or beyond the rail; clipped: samples past
    # the int16 range; resyncs: Resync events while it was recorded;
    # first_sample_number: the Cyton counter of its first sample (None when
    # fed by push()).

    def __init__(self, asm):  # type: (StripAssembler) -> None
        self.samples = None  # type: Any  # array('h'), or a memoryview of one
        self.offset_uv = self.missing = self.railed = self.clipped = self.resyncs = 0
        self.sample_rate = asm.sample_rate
        self.gain = asm.gain
        self.lead = asm.lead
        self.channel = asm.channel
        self.expected = asm.length
        self.gaps = []  # type: list[list[int]]
        self.first_sample_number = None  # type: int | None

    @property
    def duration(self):  # type: () -> float
        return len(self.samples) / self.sample_rate

    @property
    def too_short(self):  # type: () -> bool
        return len(self.samples) < self.expected

    def flags(self):  # type: () -> list[str]
        return [name for name, on in (("railed", self.railed), ("clipped", self.clipped),
                                      ("gaps", self.missing), ("resync", self.resyncs),
                                      ("too_short", self.too_short)) if on]

    def _gap(self, start, count):  # type: (int, int) -> None
        if len(self.gaps) < _MAX_GAPS:
            self.gaps.append([start, count])


class StripAssembler:
    # Cyton events (or bare counts) of one channel -> Strips of `seconds`.
    # add(event) and push(count) return a finished Strip or None; flush()
    # ends the current strip early (too_short) or returns None when it is
    # empty. `channel` is 0-based (the Cyton's N1P is 0); `gain` is that
    # channel's. The first strip's array is allocated here, while the heap
    # is young; a later strip's comes with its first sample (none is held
    # between strips).

    def __init__(self, channel=0, lead=DEFAULT_LEAD, gain=24, sample_rate=SAMPLE_RATE,
                 seconds=DEFAULT_SECONDS, rail_fraction=RAIL_FRACTION):
        # type: (int, str, int, int, float, float) -> None
        length = int(seconds * sample_rate + 0.5)
        if not 0 <= channel < 8 or not 2 * sample_rate <= length <= 32767:
            raise ValueError("channel %r not in 0..7, or strip not of 2 s to 32767 samples"
                             % channel)
        self.channel = channel
        self.lead = lead
        self.gain = gain
        self.sample_rate = sample_rate
        self.length = length
        self._scale = uv_per_count(gain)  # checks the gain
        self._rail = int(FULL_SCALE * rail_fraction)
        self._pending = 0  # samples lost before the next one
        self._last = None  # type: int | None
        self._n = 0
        self._strip = Strip(self)
        self._strip.samples = array("h", range(length))

    def add(self, event):  # type: (Any) -> Strip | None
        t = type(event)
        if t is Sample:
            done = self.push(event.counts[self.channel])
            strip = self._strip
            if strip.first_sample_number is None:
                strip.first_sample_number = (event.sample_number
                                             - self._n + 1) & 0xFF
            return done
        if t is Gap:
            self._pending += event.missing
        elif t is Resync:
            self._strip.resyncs += 1
        return None

    def gap(self, missing):  # type: (int) -> None
        # `missing` samples were lost before the next push()
        self._pending += missing

    def push(self, count):  # type: (int) -> Strip | None
        if count >= self._rail or count <= -self._rail:
            self._strip.railed += 1
        uv = round(count * self._scale)
        done = None
        missing = self._pending
        self._pending = 0
        last = self._last
        if missing and last is not None:  # nothing to fill before the first sample
            if missing > self.sample_rate:  # over 1 s lost: end the strip here
                done = self.flush()
                if done:
                    done.missing += missing
                    done._gap(len(done.samples), missing)
            else:
                step = (uv - last) / (missing + 1)
                start = self._n
                for k in range(1, missing + 1):
                    self._strip.missing += 1
                    full = self._append(last + int(step * k))
                    if full:
                        full._gap(start, full.expected - start)
                        done = full
                        start = 0
                if self._n > start:
                    self._strip._gap(start, self._n - start)
        return self._append(uv) or done

    def _append(self, uv):  # type: (int) -> Strip | None
        self._last = uv
        n = self._n
        strip = self._strip
        if n == 0:
            if strip.samples is None:
                # array('h', range(n)): one exact allocation on MicroPython
                # (a bytes initialiser needs a second block of that size)
                strip.samples = array("h", range(self.length))
            strip.offset_uv = uv
        v = uv - strip.offset_uv
        if v > 32767 or v < -32768:
            v = 32767 if v > 0 else -32768
            strip.clipped += 1
        strip.samples[n] = v
        self._n = n = n + 1
        if n < self.length:
            return None
        self._n = 0
        self._strip = Strip(self)
        return strip

    def flush(self):  # type: () -> Strip | None
        strip = self._strip
        if not self._n:
            return None
        strip.samples = memoryview(strip.samples)[:self._n]
        self._n = 0
        self._strip = Strip(self)
        return strip


def strip_reading(strip, peaks=None, min_qrs_uv=MIN_QRS_UV):
    # type: (Strip, list[int] | None, float) -> dict
    # A Strip -> the reading the gateway journals: type "ecg_strip"; values
    # [["heart_rate", bpm, "/min"]] (empty without a rate); flags: the
    # strip's ("railed", "clipped", "gaps", "resync", "too_short") plus
    # "no_heart_rate" or "suspect:heart_rate_out_of_range"; itime None (the
    # Cyton has no clock: the caller stamps it); heart_rate (int or None);
    # r_peaks (sample indices); sample_rate (Hz), gain, lead, channel,
    # duration (s), missing_samples, gaps, railed_samples; samples: the
    # strip's array('h'), microvolts around sample_offset_uv (uV = offset +
    # sample; 5 KB for 10 s; the uplink encodes it, e.g. base64 of its
    # little-endian bytes); sample_unit "uV".
    samples = strip.samples
    if peaks is None:
        peaks = detect_qrs(samples, strip.sample_rate, min_qrs_uv)
    hr = heart_rate(peaks, strip.sample_rate)
    flags = strip.flags()
    values = []
    if hr is None:
        flags.append("no_heart_rate")
    else:
        values.append(["heart_rate", hr, "/min"])
        if not HEART_RATE_RANGE[0] <= hr <= HEART_RATE_RANGE[1]:
            flags.append("suspect:heart_rate_out_of_range")
    return {"type": "ecg_strip", "values": values, "flags": flags, "itime": None,
            "heart_rate": hr, "r_peaks": peaks, "sample_rate": strip.sample_rate,
            "gain": strip.gain, "lead": strip.lead, "channel": strip.channel,
            "duration": strip.duration, "missing_samples": strip.missing,
            "gaps": strip.gaps, "railed_samples": strip.railed, "samples": samples,
            "sample_offset_uv": strip.offset_uv, "sample_unit": "uV"}
