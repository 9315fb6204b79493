# mpy-portable
# ECG strips and the Pan-Tompkins QRS detector (device_drivers.ecg), checked
# against synthetic ECG of known rate and beat times, and the whole chain
# from Cyton bytes to a reading. Comments, not docstrings: compiled from
# source in the MicroPython run's 100 KB heap, docstrings cost memory.
import math
from array import array

from device_drivers.ecg import (
    QRSDetector,
    StripAssembler,
    detect_qrs,
    heart_rate,
    strip_reading,
)

# isort: split
# Imported after device_drivers.ecg on purpose: compiled from source, ecg.py
# needs most of the MicroPython run's 100 KB heap, so it goes first.
from device_drivers.cyton import (
    CytonParser,
    Gap,
    Resync,
    encode_packet,
    uv_to_counts,
)

FS = 250

# One beat as a sum of Gaussians: (centre ms from R, amplitude uV, width ms,
# stretches with the RR interval). P, Q, R, S, T; lead II-like, R 1.1 mV.
BEAT = ((-160, 150, 22, 0), (-28, -120, 8, 0), (0, 1100, 9, 0), (28, -250, 9, 0),
        (280, 300, 45, 1))


class Lcg:
    # deterministic noise, the same on CPython and MicroPython

    def __init__(self, seed):
        self.x = seed & 0x7FFFFFFF

    def uniform(self):
        self.x = (1103515245 * self.x + 12345) & 0x7FFFFFFF
        return self.x / 2147483648.0

    def gauss(self):  # Irwin-Hall: sum of 4 uniforms, unit variance
        u = self.uniform() + self.uniform() + self.uniform() + self.uniform()
        return (u - 2.0) * 1.7320508


def beat_times(bpm=None, seconds=10.0, rr=None, first=0.35):
    # [(time s, RR s)] of the beats: every 60/bpm s, or cycling through `rr`
    rrs = rr if rr is not None else (60.0 / bpm,)
    out = []  # type: list[tuple[float, float]]
    t = first
    while t < seconds:
        out.append((t, rrs[len(out) % len(rrs)]))
        t += out[-1][1]
    return out


def synthetic_stream(bpm=None, seconds=10.0, fs=FS, rr=None, noise_uv=15.0, wander_uv=300.0,
                     mains_uv=0.0, amplitude=1.0, beat=BEAT, seed=7):
    # Microvolts, one sample at a time (no array: the end-to-end test holds
    # only the strip). Beats as beat_times(); plus 0.25 Hz baseline wander,
    # Gaussian noise and 50 Hz mains. The T wave moves with sqrt(RR) (QT
    # shortens as the rate rises).
    beats = beat_times(bpm, seconds, rr)
    rng = Lcg(seed)
    w = 2 * math.pi * 0.25 / fs
    mw = 2 * math.pi * 50.0 / fs
    j = 0  # first beat that can still reach the current sample
    for k in range(int(seconds * fs)):
        t = k / fs
        while j < len(beats) and beats[j][0] < t - 0.8:
            j += 1
        v = wander_uv * math.sin(w * k) + noise_uv * rng.gauss()
        if mains_uv:
            v += mains_uv * math.sin(mw * k)
        b = j
        while b < len(beats) and beats[b][0] < t + 0.3:
            tb, rr_s = beats[b]
            stretch = math.sqrt(min(rr_s, 1.2))
            for centre, amp, width, scaled in beat:
                if scaled:
                    centre *= stretch
                    width *= stretch
                z = (t - tb - centre / 1000.0) * 1000.0 / width
                if -5.0 < z < 5.0:
                    v += amp * amplitude * math.exp(-0.5 * z * z)
            b += 1
        yield int(v)


def synthetic_ecg(bpm=None, seconds=10.0, fs=FS, rr=None, **kw):
    # (array('h') of microvolts, [R sample indices])
    n = int(seconds * fs)
    out = array("h", range(n))
    k = 0
    for v in synthetic_stream(bpm, seconds, fs, rr, **kw):
        out[k] = v
        k += 1
    peaks = [int(t * fs + 0.5) for t, _ in beat_times(bpm, seconds, rr)]
    return out, [p for p in peaks if p < n]


def _matched(found, truth, tol=4):
    # every true beat found within tol samples (16 ms), nothing else
    if len(found) != len(truth):
        return False
    for k in range(len(found)):
        if abs(found[k] - truth[k]) > tol:
            return False
    return True


def _check_rate(bpm, **kw):
    x, truth = synthetic_ecg(bpm, **kw)
    found = detect_qrs(x, FS)
    assert _matched(found, truth), (bpm, found, truth)
    hr = heart_rate(found, FS)
    assert hr is not None and abs(hr - bpm) <= 2, (bpm, hr)


# --- heart rate against synthetic ECG --------------------------------------


def test_rates_40_to_180_bpm():
    for bpm in (40, 60, 75, 100, 150, 180):
        _check_rate(bpm)


def test_rates_through_noise_and_50hz_mains():
    for bpm in (40, 75, 180):
        _check_rate(bpm, noise_uv=60, mains_uv=300, seed=3)


def test_small_qrs_still_found():
    _check_rate(75, amplitude=0.25, noise_uv=8, seed=5)  # R wave 0.28 mV


def test_inverted_lead():
    x, truth = synthetic_ecg(72, amplitude=-1.0)
    assert _matched(detect_qrs(x, FS), truth)


def test_tall_t_waves_are_not_beats():
    beat = list(BEAT[:4])
    beat.append((280, 1000, 40, 1))  # a T wave nearly as tall as R
    for bpm in (40, 75, 150):
        x, truth = synthetic_ecg(bpm, beat=beat)
        assert _matched(detect_qrs(x, FS), truth), bpm
        x = None  # one strip at a time in a 100 KB heap


def test_other_sample_rates():
    for fs in (200, 500):
        x, truth = synthetic_ecg(75, seconds=4.8, fs=fs)
        found = detect_qrs(x, fs)
        assert _matched(found, truth, fs // 50), (fs, found, truth)
        assert heart_rate(found, fs) == 75
        x = None


# --- no beats where there are none -----------------------------------------


def test_flat_signal_has_no_beats():
    x, _ = synthetic_ecg(60, amplitude=0.0, noise_uv=0.0, wander_uv=0.0)
    assert detect_qrs(x, FS) == []
    assert heart_rate([], FS) is None


def test_noise_only_has_no_beats():
    for noise, mains, seed in ((30.0, 300.0, 1), (60.0, 0.0, 2), (15.0, 100.0, 3)):
        x, _ = synthetic_ecg(60, amplitude=0.0, noise_uv=noise, wander_uv=500.0,
                             mains_uv=mains, seed=seed)
        assert detect_qrs(x, FS) == [], (noise, mains)
        x = None


def test_qrs_below_the_floor_is_not_a_beat():
    x, _ = synthetic_ecg(75, amplitude=0.05, noise_uv=2.0)  # R wave 55 uV
    assert detect_qrs(x, FS) == []


def test_artefact_in_learning_window_is_ignored():
    x, truth = synthetic_ecg(100)
    for k in range(120, 135):  # a 20 mV electrode pop, 60 ms
        x[k] = 20000
    found = detect_qrs(x, FS)
    # the beat under the artefact is lost, every other one found
    assert _matched(found, truth[1:]), (found, truth)
    assert heart_rate(found, FS) == 100


# --- irregular rhythms ------------------------------------------------------


def test_alternating_rr_gives_every_beat():
    for rr in ((0.6, 1.0), (0.4, 1.2), (0.5, 0.9)):
        x, truth = synthetic_ecg(rr=rr)
        found = detect_qrs(x, FS)
        assert len(found) == len(truth) and _matched(found, truth), (rr, found, truth)
        mean_rr = (truth[-1] - truth[0]) / (len(truth) - 1) / FS
        assert abs(heart_rate(found, FS) - 60 / mean_rr) <= 1
        x = None


def test_premature_beats_and_a_pause():
    for rr in ((0.8, 0.8, 0.8, 0.45, 1.15), (0.8, 0.8, 0.8, 0.8, 0.8, 1.6),
               (0.8, 0.7, 0.95, 0.6, 1.1, 0.75)):
        x, truth = synthetic_ecg(rr=rr)
        assert _matched(detect_qrs(x, FS), truth), rr
        x = None


def test_rate_change_in_one_stream():
    # 10 s at 150 bpm, then 10 s at 40: the RR averages follow
    det = QRSDetector(FS)
    truth = []
    offset = 0
    for bpm in (150, 40):
        x, t = synthetic_ecg(bpm)
        truth += [p + offset for p in t]
        for v in x:
            det.push(v)
        offset += len(x)
        x = None
    assert _matched(det.finish(), truth)


def test_heart_rate_is_60_over_the_mean_rr():
    assert heart_rate([0, 250], 250) == 60
    assert heart_rate([0, 150, 400, 550, 800], 250) == 75  # alternating 0.6/1.0 s
    assert heart_rate([10], 250) is None


def test_detector_peaks_are_ordered_and_apart():
    for rr in ((0.6, 1.0), (0.35,)):
        x, _ = synthetic_ecg(rr=rr, noise_uv=80.0, seed=9)
        found = detect_qrs(x, FS)
        for k in range(1, len(found)):
            assert found[k] - found[k - 1] >= 50  # the 200 ms refractory period
        x = None


# --- strips -----------------------------------------------------------------


def test_cyton_bytes_to_an_ecg_reading():
    # 10 s at 72 bpm on channel 2 (gain 12, with a 20 mV electrode offset),
    # 1 mV square junk on the other channels; packets 700 and 701 lost on the
    # radio, packet 1500 cut short by a UART overrun.
    asm = StripAssembler(channel=2, lead="II", gain=12)  # first: its 5 KB array
    parser = CytonParser(gains=(24, 24, 12, 24, 24, 24, 24, 24))
    strips = []
    seen = {Gap: 0, Resync: 0}
    expect = {}
    k = 0
    for uv in synthetic_stream(72, 10.0):
        uv -= 20000
        if k in (0, 1, 699, 702, 1499, 1501, 2499):
            expect[k] = uv
        counts = [uv_to_counts(((k // 25) % 2) * 1000.0, 12)] * 8
        counts[2] = uv_to_counts(uv, 12)
        pkt = encode_packet(k & 0xFF, counts, (k, 0, -k), 0xC0)
        k += 1
        if k - 1 in (700, 701):
            continue
        parser.feed(pkt[:20] if k - 1 == 1500 else pkt)
        for ev in parser:
            if type(ev) in seen:
                seen[type(ev)] += 1
            s = asm.add(ev)
            if s is not None:
                strips.append(s)
    assert seen[Gap] == 2 and seen[Resync] == 1
    assert parser.lost == 3 and parser.dropped_bytes == 20
    assert len(strips) == 1
    strip = strips[0]
    assert strip.first_sample_number == 0 and strip.missing == 3
    assert strip.gaps == [[700, 2], [1500, 1]]
    assert strip.resyncs == 1 and strip.channel == 2
    r = strip_reading(strip)
    assert r["type"] == "ecg_strip" and r["lead"] == "II" and r["gain"] == 12
    assert r["sample_rate"] == 250 and r["duration"] == 10.0 and r["sample_unit"] == "uV"
    assert r["itime"] is None
    assert r["flags"] == ["gaps", "resync"]
    assert r["missing_samples"] == 3 and r["railed_samples"] == 0
    hr = r["heart_rate"]
    assert abs(hr - 72) <= 2 and r["values"] == [["heart_rate", hr, "/min"]]
    truth = [int(t * FS + 0.5) for t, _ in beat_times(72, 10.0)]
    assert _matched(r["r_peaks"], truth), (r["r_peaks"], truth)
    samples = r["samples"]
    assert type(samples) is array and len(samples) == 2500  # of int16
    off = r["sample_offset_uv"]
    for k in expect:  # within 1 uV where not filled
        assert abs(off + samples[k] - expect[k]) <= 1, k


def test_reading_of_a_strip_without_beats():
    asm = StripAssembler(seconds=2)
    for k in range(499):
        asm.push((k % 7) * 400)  # counts: 9 uV steps
    strip = asm.push(0)
    assert strip is not None
    r = strip_reading(strip)
    assert r["heart_rate"] is None and r["values"] == [] and r["r_peaks"] == []
    assert r["flags"] == ["no_heart_rate"] and r["type"] == "ecg_strip"


def test_reading_flags_an_implausible_rate():
    asm = StripAssembler(seconds=4)
    strip = None
    for _ in range(1000):
        strip = asm.push(0)
    assert strip is not None
    r = strip_reading(strip, peaks=[0, 40, 80, 120])  # 375 bpm
    assert r["heart_rate"] == 375 and r["values"] == [["heart_rate", 375, "/min"]]
    assert r["flags"] == ["suspect:heart_rate_out_of_range"]
