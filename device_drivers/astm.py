# ASTM E1381 (low level: frames, checksums, the ENQ/ACK/EOT handshake) and
# ASTM E1394 (records H, P, O, R, C, L ...), sans-I/O. Point-of-care
# analysers and glucometers (e.g. Bayer/Ascensia Contour) speak them.
#
# Theory of operation
# -------------------
# Link (E1381). The sender bids with ENQ; the receiver answers ACK (ready),
# NAK (busy: bid again after 10 s) or ENQ (contention: the instrument wins,
# re-bids after 1 s; a computer yields). Then frames
#   STX FN text ETB|ETX C1 C2 CR LF
# FN is "0".."7", 1 for the first frame after ENQ, +1 mod 8 per accepted
# frame, continuing across messages. C1 C2 is the sum of the bytes from FN
# through ETB/ETX mod 256 as two upper-case hex digits. Text is at most 240
# characters; a record starts a new frame; ETB ends an intermediate frame,
# ETX the last frame of a message. The receiver answers each frame ACK, or
# NAK (bad checksum, wrong FN, malformed); a repeat of the frame it last
# accepted (its ACK was lost) is ACKed and dropped. A frame is sent at most 6
# times; after the 6th NAK both sides give up. EOT ends the link (an EOT in
# place of ACK is a receiver's interrupt request: it also accepts the frame).
# The receiver hands over each record as soon as its CR arrives, and marks
# the end of each message: a meter that sends its whole memory as one
# message (Bayer Contour) never needs more heap than one record. After
# ABORTED, the records since the last MESSAGE_END belong to a message the
# sender did not finish (it sends it again later: deduplicate, or drop them).
# Timers: the sender waits 15 s for a reply, the receiver 30 s for a frame.
# Sender and Receiver are state machines: feed(bytes) -> events, bytes to
# write from data_to_send(), timeout() when the caller's timer (`timer`
# seconds) runs out. No clock, no port.
#
# Records (E1394). A message is records, each ending in CR; fields split by
# "|", repeats by "\", components by "^", escape "&" (the header H|\^& can
# redefine them). decode_record() gives a dict with the raw fields and the
# typed ones the gateway uses; ResultCollector follows H/P/O/R/.../L across
# messages and turns R records into readings. Encoders build records,
# messages and frames for the instrument simulators and tests.
# (Comments instead of docstrings: they cost heap when the module is compiled
# from source on the MicroPython port.)
from device_drivers import DecodeError

STX = 0x02
ETX = 0x03
EOT = 0x04
ENQ = 0x05
ACK = 0x06
LF = 0x0A
CR = 0x0D
NAK = 0x15
ETB = 0x17

MAX_TEXT = 240  # characters of text per frame (frame of 247 with the framing)
MAX_ATTEMPTS = 6  # transmissions of one frame (or ENQ bids refused busy)
SENDER_TIMEOUT = 15  # seconds for a reply to ENQ or a frame
RECEIVER_TIMEOUT = 30  # seconds for the next frame or EOT
BUSY_DELAY = 10  # seconds before bidding again after NAK to ENQ
CONTENTION_DELAY = 1  # seconds before the instrument bids again

# Characters that may not appear in frame text
_RESTRICTED = b"\x01\x02\x03\x04\x05\x06\x0a\x10\x11\x12\x13\x14\x15\x16\x17"

# Events
LINK_UP = "link_up"  # ENQ accepted (receiver) / acknowledged (sender)
RECORD = "record"  # receiver: one complete record (bytes, CR removed)
MESSAGE_END = "message_end"  # receiver: ETX; the records before it are a message
REJECTED = "rejected"  # a frame was NAKed (payload: reason / attempt)
LINK_DOWN = "link_down"  # receiver: EOT after whole messages
DELIVERED = "delivered"  # sender: message number n was accepted
INTERRUPT = "interrupt"  # sender: the receiver asked to stop (EOT for ACK)
DONE = "done"  # sender: every message sent, EOT written
ABORTED = "aborted"  # link ended early (reason): a message was left unfinished


def checksum(data):
    # E1381 checksum of the bytes from FN through ETB/ETX.
    total = 0
    for b in data:
        total += b
    return total & 0xFF


def encode_frame(fn, text, final=True):
    # One frame: STX FN text ETX|ETB C1 C2 CR LF (`text` is bytes).
    if not 0 <= fn <= 7:
        raise ValueError("frame number 0-7")
    if len(text) > MAX_TEXT:
        raise ValueError("frame text over %d characters" % MAX_TEXT)
    for b in text:
        if b in _RESTRICTED:
            raise ValueError("control character 0x%02X in frame text" % b)
    body = bytes((0x30 + fn,)) + text + bytes((ETX if final else ETB,))
    return b"\x02" + body + ("%02X\r\n" % checksum(body)).encode()


def decode_frame(frame):
    # A whole frame (STX ... CR LF) -> (fn, text, final).
    if not isinstance(frame, (bytes, bytearray)):
        raise DecodeError("frame must be bytes", "frame", 0)
    n = len(frame)
    if n < 7 or frame[0] != STX:
        raise DecodeError("frame is STX ... CR LF", "frame", 0)
    fn = frame[1] - 0x30
    if not 0 <= fn <= 7:
        raise DecodeError("frame number is 0-7", "frame_number", 1)
    end = frame[n - 5]
    if end != ETX and end != ETB:
        raise DecodeError("no ETX/ETB before the checksum", "end", n - 5)
    if frame[n - 2] != CR or frame[n - 1] != LF:
        raise DecodeError("frame ends CR LF", "end", n - 2)
    given = _hex2(frame, n - 4)
    computed = checksum(frame[1:n - 4])
    if given != computed:
        raise DecodeError("checksum %02X, computed %02X" % (given, computed),
                          "checksum", n - 4)
    text = bytes(frame[2:n - 5])
    for i in range(len(text)):
        if text[i] in _RESTRICTED:
            raise DecodeError("control character in text", "text", 2 + i)
    return fn, text, end == ETX


def _hex2(data, i):
    value = 0
    for j in (i, i + 1):
        d = "0123456789ABCDEF".find(chr(data[j]).upper())
        if d < 0:
            raise DecodeError("checksum is 2 hex digits", "checksum", j)
        value = value * 16 + d
    return value


def message_frames(text, first_fn=1):
    # Frames for one message (bytes of CR-terminated records): each record
    # starts a frame, long ones are cut at 240 characters; ETX ends the last.
    # Returns (frames, next frame number).
    records = []
    start = 0
    for i in range(len(text)):
        if text[i] == CR:
            records.append(text[start:i + 1])
            start = i + 1
    if start < len(text) or not records:
        records.append(text[start:])
    chunks = []
    for rec in records:
        for i in range(0, max(len(rec), 1), MAX_TEXT):
            chunks.append(rec[i:i + MAX_TEXT])
    frames = []
    fn = first_fn
    for i in range(len(chunks)):
        frames.append(encode_frame(fn, chunks[i], i == len(chunks) - 1))
        fn = (fn + 1) & 7
    return frames, fn


class Receiver:
    # The computer's side of E1381: ACK/NAK the instrument's frames and hand
    # over their records.
    #
    # feed(data) -> list of (event, payload); data_to_send() -> bytes (ACK/NAK)
    # to write; call timeout() when `timer` seconds pass with no byte received
    # (restart the timer on every feed).

    def __init__(self, max_text=MAX_TEXT, max_record=4096):
        self._max_text = max_text
        self._max_record = max_record
        self._out = bytearray()
        self._idle()

    def _idle(self):
        self.state = "idle"
        self._frame = None  # bytearray while inside a frame
        self._tail = -1  # bytes seen after ETX/ETB (-1: still in text)
        self._over = False
        self._expected = 1
        self._accepted = False
        self._in_message = False  # frames accepted since the last ETX
        self._record = bytearray()
        self.rejects = 0

    @property
    def timer(self):
        return RECEIVER_TIMEOUT if self.state == "transfer" else None

    def data_to_send(self):
        out = bytes(self._out)
        self._out = bytearray()
        return out

    def timeout(self):
        if self.state != "transfer":
            return []
        self._idle()
        return [(ABORTED, "timeout")]

    def feed(self, data):
        events = []  # type: list[tuple[str, object]]
        for b in data:
            self._byte(b, events)
        return events

    def _byte(self, b, events):
        if self.state == "idle":
            if b == ENQ:
                self._link_up(events)
            return
        fr = self._frame
        if b == EOT:  # an unacknowledged frame is the sender's to resend
            partial = self._in_message
            self._idle()
            events.append((ABORTED, "EOT inside a message") if partial else (LINK_DOWN, None))
            return
        if b == STX:  # a frame starts (a cut one before it is dropped)
            self._frame = bytearray(b"\x02")
            self._tail = -1
            self._over = False
            return
        if fr is None:
            if b == ENQ:  # the sender bids again: start over
                if self._in_message:
                    events.append((ABORTED, "new ENQ inside a message"))
                self._link_up(events)
            return  # noise between frames
        if self._tail < 0:
            if len(fr) < self._max_text + 2:
                fr.append(b)
            elif b != ETX and b != ETB:
                self._over = True
            else:
                fr.append(b)
            if b == ETX or b == ETB:
                self._tail = 0
            return
        self._tail += 1
        fr.append(b)
        if (self._tail == 3 and b != CR) or (self._tail == 4 and b != LF):
            self._frame = None
            self._reject("frame does not end CR LF", events)
        elif self._tail == 4:
            self._frame = None
            self._complete(bytes(fr), events)

    def _link_up(self, events):
        self._idle()
        self.state = "transfer"
        self._out.append(ACK)
        events.append((LINK_UP, None))

    def _complete(self, raw, events):
        if self._over:
            self._reject("frame text over %d characters" % self._max_text, events)
            return
        try:
            fn, text, final = decode_frame(raw)
        except DecodeError as e:
            self._reject(e.field, events)
            return
        if fn == self._expected:
            n = len(self._record)
            for b in text:
                n = 0 if b == CR else n + 1
                if n > self._max_record:
                    self._reject("record over %d bytes" % self._max_record, events)
                    return
            self._expected = (fn + 1) & 7
            self._accepted = True
            self._in_message = not final
            self.rejects = 0
            self._out.append(ACK)
            rec = self._record
            for b in text:
                if b == CR:
                    events.append((RECORD, bytes(rec)))
                    rec = bytearray()
                else:
                    rec.append(b)
            if final:
                if rec:  # the last record may lack its CR
                    events.append((RECORD, bytes(rec)))
                    rec = bytearray()
                events.append((MESSAGE_END, None))
            self._record = rec
        elif self._accepted and fn == (self._expected - 1) & 7:
            self._out.append(ACK)  # a repeat: our ACK was lost
        else:
            self._reject("frame number %d, expected %d" % (fn, self._expected), events)

    def _reject(self, reason, events):
        self.rejects += 1
        self._out.append(NAK)
        events.append((REJECTED, reason))
        if self.rejects >= MAX_ATTEMPTS:
            self._idle()
            events.append((ABORTED, "frame rejected %d times" % MAX_ATTEMPTS))


class Sender:
    # The instrument's side of E1381 (simulators and tests): sends
    # `messages` (bytes of CR-terminated records) after start().
    #
    # feed(data) takes the receiver's replies and returns events;
    # data_to_send() gives what to write; timeout() when `timer` runs out.
    # `priority` is the instrument's right in contention (a computer has none).

    def __init__(self, messages, priority=True):
        self._frames = []  # (frame, message number, last frame of the message)
        fn = 1
        for m in range(len(messages)):
            frames, fn = message_frames(messages[m], fn)
            for i in range(len(frames)):
                self._frames.append((frames[i], m, i == len(frames) - 1))
        self._priority = priority
        self._out = bytearray()
        self.state = "idle"
        self._i = 0
        self.attempts = 0
        self._bids = 0

    @property
    def timer(self):
        return {"establishing": SENDER_TIMEOUT, "transfer": SENDER_TIMEOUT,
                "busy": BUSY_DELAY, "contention": CONTENTION_DELAY}.get(self.state)

    def data_to_send(self):
        out = bytes(self._out)
        self._out = bytearray()
        return out

    def start(self):
        if self.state != "idle":
            raise ValueError("sender already started")
        self._bid()

    def _bid(self):
        self.state = "establishing"
        self._out.append(ENQ)

    def timeout(self):
        if self.state in ("busy", "contention"):
            self._bid()
            return []
        if self.state in ("establishing", "transfer"):
            return self._end(ABORTED, "no reply in %d s" % SENDER_TIMEOUT)
        return []

    def _end(self, event, payload):
        self.state = "done"
        self._out.append(EOT)
        return [(event, payload)]

    def feed(self, data):
        events = []  # type: list[tuple[str, object]]
        for b in data:
            if self.state == "establishing":
                self._establishing(b, events)
            elif self.state == "transfer":
                self._transfer(b, events)
        return events

    def _establishing(self, b, events):
        if b == ACK:
            self.state = "transfer"
            events.append((LINK_UP, None))
            self._send_next(events)
        elif b == NAK:
            self._bids += 1
            if self._bids >= MAX_ATTEMPTS:
                self.state = "done"
                events.append((ABORTED, "receiver busy"))
            else:
                self.state = "busy"
        elif b == ENQ:
            if self._priority:
                self.state = "contention"
            else:
                self.state = "done"
                events.append((ABORTED, "contention: the instrument goes first"))

    def _transfer(self, b, events):
        if b == ACK or b == EOT:
            if b == EOT:
                events.append((INTERRUPT, None))
            m, last = self._frames[self._i][1:]
            if last:
                events.append((DELIVERED, m))
            self._i += 1
            self._send_next(events)
            return
        events.append((REJECTED, self.attempts))  # NAK or anything but ACK/EOT
        if self.attempts >= MAX_ATTEMPTS:
            events.extend(self._end(ABORTED, "frame rejected %d times" % MAX_ATTEMPTS))
        else:
            self.attempts += 1
            self._out.extend(self._frames[self._i][0])

    def _send_next(self, events):
        if self._i >= len(self._frames):
            events.extend(self._end(DONE, None))
            return
        self.attempts = 1
        self._out.extend(self._frames[self._i][0])


# ---------------------------------------------------------------------------
# E1394 records

DELIMITERS = "|\\^&"  # field, repeat, component, escape


def text_of(data):
    # Message bytes -> str (ISO 8859-1: every byte is one character).
    if isinstance(data, str):
        return data
    for b in data:
        if b > 0x7F:
            return "".join([chr(c) for c in data])
    return bytes(data).decode()


def bytes_of(text):
    # str -> bytes in ISO 8859-1 (ValueError past U+00FF).
    out = bytearray()
    for c in text:
        o = ord(c)
        if o > 0xFF:
            raise ValueError("character %r is not ISO 8859-1" % c)
        out.append(o)
    return bytes(out)


def delimiters_of(header):
    # The delimiters a header record defines: H|\^& -> "|\^&".
    if len(header) < 5 or header[0] != "H":
        raise DecodeError("header too short", "delimiters", 1)
    d = header[1:5]
    for i in range(4):
        c = d[i]
        if c in d[i + 1:] or "0" <= c <= "9" or "A" <= c.upper() <= "Z" or c in "\r\n ":
            raise DecodeError("bad delimiter %r" % c, "delimiters", 1 + i)
    if len(header) > 5 and header[5] != d[0]:
        raise DecodeError("delimiters are 4 characters", "delimiters", 5)
    return d


def _unescape(s, d):
    esc = d[3]
    if esc not in s:
        return s
    out = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        j = s.find(esc, i + 1) if c == esc else -1
        if j > i:
            rep = _escape_value(s[i + 1:j], d)
            if rep is not None:
                out.append(rep)
                i = j + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _escape_value(seq, d):
    if seq == "F":
        return d[0]
    if seq == "R":
        return d[1]
    if seq == "S":
        return d[2]
    if seq == "E":
        return d[3]
    if seq == "H" or seq == "N":  # highlighting on/off
        return ""
    if len(seq) > 1 and seq[0] == "X" and len(seq) % 2 == 1:
        out = []
        for i in range(1, len(seq), 2):
            hi = "0123456789ABCDEF".find(seq[i].upper())
            lo = "0123456789ABCDEF".find(seq[i + 1].upper())
            if hi < 0 or lo < 0:
                return None
            out.append(chr(hi * 16 + lo))
        return "".join(out)
    return None  # unknown: kept as written


def _escape(s, d):
    esc = d[3]
    out = []
    for c in s:
        if c == esc:
            out.append(esc + "E" + esc)
        elif c == d[0]:
            out.append(esc + "F" + esc)
        elif c == d[1]:
            out.append(esc + "R" + esc)
        elif c == d[2]:
            out.append(esc + "S" + esc)
        else:
            out.append(c)
    return "".join(out)


def repeats(record, n):
    # Field n (1-based, as the standard numbers them) as a list of repeats,
    # each a list of unescaped components.
    fields = record["fields"]
    if n > len(fields) or not fields[n - 1]:
        return []
    d = record["delimiters"]
    raw = fields[n - 1]
    if n == 2 and fields[0] == "H":
        return [[raw]]
    return [[_unescape(c, d) for c in r.split(d[2])] for r in raw.split(d[1])]


def components(record, n):
    # Components of the first repeat of field n ([] when empty).
    r = repeats(record, n)
    return r[0] if r else []


def field_text(record, n):
    # First component of field n, unescaped ("" when empty).
    c = components(record, n)
    return c[0] if c else ""


def _offset(record, n):
    fields = record["fields"]
    off = 0
    for i in range(min(n, len(fields) + 1) - 1):
        off += len(fields[i]) + 1
    return off


def _int(text, field, offset):
    if not text or len(text) > 9:
        raise DecodeError("expected 1-9 digits", field, offset)
    value = 0
    for i in range(len(text)):
        d = "0123456789".find(text[i])
        if d < 0:
            raise DecodeError("expected a digit", field, offset + i)
        value = value * 10 + d
    return value


def parse_timestamp(text, field="timestamp", offset=0):
    # YYYYMMDD[HH[MM[SS]]] -> (year, month, day, hour, minute, second).
    n = len(text)
    if n not in (8, 10, 12, 14):
        raise DecodeError("date/time is YYYYMMDD[HH[MM[SS]]]", field, offset)
    parts = [_int(text[0:4], field, offset)]
    for i in range(4, 14, 2):
        parts.append(_int(text[i:i + 2], field, offset + i) if i < n else 0)
    y, mo, d, h, mi, s = parts
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 59):
        raise DecodeError("date/time out of range", field, offset)
    return (y, mo, d, h, mi, s)


def format_timestamp(ts, length=14):
    return ("%04d%02d%02d%02d%02d%02d" % tuple(ts))[:length]


def parse_number(text):
    # Decimal text -> int or float (rounded to the decimals given), or None
    # when it is not a plain number ("<20", "POS", "1e3").
    s = text.strip()
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    whole, _, frac = s.partition(".")
    if not whole + frac or len(whole + frac) > 15:
        return None
    for c in whole + frac:
        if not "0" <= c <= "9":
            return None
    value = int(whole + frac)
    if not frac:
        return sign * value
    return sign * round(value / (10 ** len(frac)), len(frac))


def _sequence(record, required=True):
    text = field_text(record, 2)
    if not text and not required:
        return None
    return _int(text, "sequence", _offset(record, 2))


def _timestamp_field(record, n, name):
    text = field_text(record, n)
    if not text:
        return None
    return parse_timestamp(text, name, _offset(record, n))


def decode_record(text, delimiters=DELIMITERS):
    # One record (str or bytes, no CR) -> dict: "type", "fields" (raw,
    # fields[n-1] is the standard's field n), "delimiters", and typed keys.
    text = text_of(text)
    if text[:1] == "H":
        delimiters = delimiters_of(text)
    rtype = text[:1]
    if not "A" <= rtype <= "Z" or (len(text) > 1 and text[1] != delimiters[0]):
        raise DecodeError("record type is one letter", "record_type", 0)
    rec = {"type": rtype, "fields": text.split(delimiters[0]),
           "delimiters": delimiters}  # type: dict[str, object]
    decoder = _DECODERS.get(rtype)
    if decoder is not None:
        decoder(rec)
    return rec


def _decode_h(rec):
    rec["message_id"] = field_text(rec, 3)
    rec["sender"] = components(rec, 5)
    rec["receiver"] = components(rec, 10)
    rec["processing_id"] = field_text(rec, 12)
    rec["version"] = field_text(rec, 13)
    rec["timestamp"] = _timestamp_field(rec, 14, "timestamp")


def _decode_p(rec):
    rec["sequence"] = _sequence(rec)
    rec["patient_id"] = field_text(rec, 3)
    rec["lab_patient_id"] = field_text(rec, 4)
    rec["name"] = components(rec, 6)
    rec["birthdate"] = field_text(rec, 8)
    rec["sex"] = field_text(rec, 9)


def _decode_o(rec):
    rec["sequence"] = _sequence(rec)
    rec["specimen_id"] = field_text(rec, 3)
    rec["instrument_specimen_id"] = field_text(rec, 4)
    rec["test_id"] = components(rec, 5)
    rec["priority"] = field_text(rec, 6)
    rec["action_code"] = field_text(rec, 12)
    rec["report_type"] = field_text(rec, 26)


# Result abnormal flags with an unambiguous meaning for the gateway
_FLAG_NAMES = {"<": "lo", ">": "hi", "L": "below_normal", "H": "above_normal",
               "LL": "critical_low", "HH": "critical_high"}


def _decode_r(rec):
    rec["sequence"] = _sequence(rec)
    test = components(rec, 3)
    analyte = ""
    for i in (3, 1, 0):  # local code, test name, universal test id
        if i < len(test) and test[i]:
            analyte = test[i]
            break
    if not analyte:
        raise DecodeError("result without a test id", "universal_test_id", _offset(rec, 3))
    rec["test_id"] = test
    rec["analyte"] = analyte
    value_text = field_text(rec, 4).strip()
    rec["value_text"] = value_text
    rec["value"] = parse_number(value_text) if value_text else None
    unit = components(rec, 5)
    rec["unit"] = unit[0] if unit and unit[0] else None
    rec["unit_components"] = unit
    ref = field_text(rec, 6)
    rec["reference_text"] = ref
    rec["reference_range"] = _range(ref)
    codes = []
    for r in repeats(rec, 7):
        for code in r[0].split("/"):  # Bayer lists markers with "/"
            if code:
                codes.append(code)
    rec["abnormal_flags"] = codes
    flags = []
    for code in codes:
        name = _FLAG_NAMES.get(code)
        if name and name not in flags:
            flags.append(name)
    for mark, name in (("<", "lo"), (">", "hi")):
        if value_text[:1] == mark and name not in flags:
            flags.append(name)
    rec["flags"] = flags
    status = field_text(rec, 9)
    rec["operator"] = field_text(rec, 11)
    rec["started"] = _timestamp_field(rec, 12, "started")
    rec["completed"] = _timestamp_field(rec, 13, "completed")
    rec["instrument"] = field_text(rec, 14)
    ts = rec["completed"] or rec["started"]
    if len(status) > 1 and parse_number(status) is not None:
        # Bayer Contour layout: the test time in field 9, no status
        ts = ts or parse_timestamp(status, "timestamp", _offset(rec, 9))
        status = ""
    rec["status"] = status or None
    rec["timestamp"] = ts


def _range(text):
    t = text.strip()
    if " to " in t:
        lo, _, hi = t.partition(" to ")
    else:
        i = t.find("-", 1)
        if i < 0:
            return None
        lo, hi = t[:i], t[i + 1:]
    a = parse_number(lo)
    b = parse_number(hi)
    if a is None or b is None:
        return None
    return (a, b)


def _decode_c(rec):
    rec["sequence"] = _sequence(rec)
    rec["source"] = field_text(rec, 3)
    rec["text"] = components(rec, 4)
    rec["comment_type"] = field_text(rec, 5)


def _decode_l(rec):
    rec["sequence"] = _sequence(rec, False)
    rec["termination_code"] = field_text(rec, 3)


def _decode_other(rec):  # M, Q, S: only the sequence number is common
    rec["sequence"] = _sequence(rec, False)


_DECODERS = {"H": _decode_h, "P": _decode_p, "O": _decode_o, "R": _decode_r,
             "C": _decode_c, "L": _decode_l, "M": _decode_other,
             "Q": _decode_other, "S": _decode_other}


def split_records(text):
    # Message text (bytes or str) -> record strings (CR removed).
    return [r for r in text_of(text).split("\r") if r]


def decode_message(text, delimiters=DELIMITERS):
    # All records of a message; an H record sets the delimiters that follow.
    out = []
    for r in split_records(text):
        rec = decode_record(r, delimiters)
        delimiters = rec["delimiters"]
        out.append(rec)
    return out


class ResultCollector:
    # Follows records across messages (an instrument may send each record
    # as its own message) and turns R records into readings carrying their
    # patient and specimen. add_message(text) -> readings; text is one record
    # (a Receiver's RECORD payload) or several, each ending in CR.

    def __init__(self):
        self.delimiters = DELIMITERS
        self.header = None
        self.patient = None
        self.order = None
        self.terminated = False

    def add_message(self, text):
        readings = []
        for r in split_records(text):
            reading = self.add_record(decode_record(r, self.delimiters))
            if reading is not None:
                readings.append(reading)
        return readings

    def add_record(self, rec):
        t = rec["type"]
        if t == "H":
            self.delimiters = rec["delimiters"]
            self.header = rec
            self.patient = self.order = None
            self.terminated = False
        elif t == "P":
            self.patient = rec
            self.order = None
        elif t == "O":
            self.order = rec
        elif t == "L":
            self.terminated = True
            self.patient = self.order = None
        elif t == "R":
            return result_to_reading(rec, self.patient, self.order)
        return None


def result_to_reading(rec, patient=None, order=None):
    # An R record (decoded) -> reading dict for the gateway.
    out = {}  # type: dict[str, object]
    for k in ("sequence", "analyte", "test_id", "value", "value_text", "unit",
              "reference_range", "abnormal_flags", "flags", "status", "timestamp"):
        out[k] = rec[k]
    out["patient_id"] = patient["patient_id"] or patient["lab_patient_id"] if patient else None
    out["specimen_id"] = order["specimen_id"] if order else None
    return out


def results_to_readings(records):
    # Readings from a list of decoded records (one or more messages).
    c = ResultCollector()
    out = []
    for rec in records:
        reading = c.add_record(rec)
        if reading is not None:
            out.append(reading)
    return out


# ---------------------------------------------------------------------------
# Encoders (instrument simulators and tests)

def _number_text(value):
    if isinstance(value, float):
        return ("%.6f" % value).rstrip("0").rstrip(".")
    return str(value)


def _field(value, d):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        reps = value if value and isinstance(value[0], (list, tuple)) else [value]
        return d[1].join([d[2].join([_field(c, d) for c in r]) for r in reps])
    return _escape(_number_text(value), d)


def encode_record(fields, delimiters=DELIMITERS):
    # A record string from fields[0] (type letter) and fields 2..n: str,
    # number, None, a list of components or a list of repeats (lists).
    d = delimiters
    out = [_field(f, d) for f in fields]
    while len(out) > 2 and not out[-1]:  # trailing empty fields may be left out
        out.pop()
    if fields[0] == "H":
        out[1] = d[1:]
    return d[0].join(out)


def header_record(sender=(), timestamp=None, version="1", processing_id="P",
                  message_id="", receiver="", delimiters=DELIMITERS):
    ts = format_timestamp(timestamp) if timestamp else ""
    return encode_record(["H", None, message_id, "", list(sender) or "", "", "", "", "",
                          receiver, "", processing_id, version, ts], delimiters)


def patient_record(sequence, patient_id="", lab_patient_id="", name=(), birthdate="",
                   sex="", delimiters=DELIMITERS):
    return encode_record(["P", sequence, patient_id, lab_patient_id, "", list(name) or "",
                          "", birthdate, sex], delimiters)


def order_record(sequence, specimen_id="", test_id=(), priority="R", action_code="",
                 report_type="F", delimiters=DELIMITERS):
    fields = ["O", sequence, specimen_id, "", list(test_id) or "", priority]
    fields += [""] * 5 + [action_code] + [""] * 13 + [report_type]
    return encode_record(fields, delimiters)


def result_record(sequence, analyte, value, unit="", reference_range=None,
                  abnormal_flags=(), status="F", timestamp=None, started=None,
                  operator="", instrument="", test_id=None, delimiters=DELIMITERS):
    # An R record; `test_id` defaults to ^^^<analyte> (local code).
    ref = ""
    if reference_range is not None:
        ref = "%s to %s" % (_number_text(reference_range[0]),
                            _number_text(reference_range[1]))
    flags = [[f] for f in abnormal_flags] if abnormal_flags else ""
    return encode_record([
        "R", sequence, test_id or ["", "", "", analyte], value, unit, ref, flags, "",
        status, "", operator, format_timestamp(started) if started else "",
        format_timestamp(timestamp) if timestamp else "", instrument], delimiters)


def comment_record(sequence, text, source="I", comment_type="G", delimiters=DELIMITERS):
    return encode_record(["C", sequence, source, text, comment_type], delimiters)


def terminator_record(sequence=1, code="N", delimiters=DELIMITERS):
    return encode_record(["L", sequence, code], delimiters)


def encode_message(records):
    # Records (str) -> message bytes, each record ending in CR.
    return bytes_of("".join([r + "\r" for r in records]))


def encode_transmission(messages, first_fn=1):
    # Every frame of one link session (ENQ ... EOT), frame numbers running
    # on across messages.
    out = []
    fn = first_fn
    for m in messages:
        frames, fn = message_frames(m, fn)
        out.extend(frames)
    return out
