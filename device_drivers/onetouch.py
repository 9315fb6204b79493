# LifeScan OneTouch Ultra2 serial protocol (9600 baud 8N1), sans-I/O.
#
# Theory of operation
# -------------------
# The computer sends a command framed DC1 CR <command> CR (0x11 0x0D ...
# 0x0D); the meter answers with text lines "<body> <cccc>" CR LF, where cccc
# is the 16-bit sum of the body's bytes (every byte before the single space
# that precedes the checksum) written as 4 upper-case hex digits. DMP answers
# with a header line (record count, meter serial, display unit) followed by
# one line per stored reading, newest first. Values are always mg/dL, even on
# a meter that displays mmol/L.
#
# LineFramer turns bytes into lines and resynchronises on garbage (a byte
# that is neither printable ASCII nor CR/LF drops the partial line; an
# overlong line is dropped up to the next CR/LF). decode_line() checks the
# checksum and says what the line is. DumpParser follows a DMP answer line by
# line and returns readings; a remote fault (bad checksum, a line that is not
# part of a dump) moves it to ERROR and the caller asks for the dump again.
# Encoders at the end produce the meter's side, for simulators and tests.
#
# Formats come from captures published by open-source downloaders (Tidepool
# uploader, glucometerutils) whose checksums verify, and from the code tables
# those projects say they took from LifeScan's document. The meter's range is
# 20-600 mg/dL: a stored value outside it is flagged "lo"/"hi", never clamped.
# (Comments instead of docstrings: they cost heap when the module is compiled
# from source on the MicroPython port.)
from device_drivers import NEED_DATA, DecodeError

BAUDRATE = 9600



_DC1 = 0x11
_CR = 0x0D
_LF = 0x0A
MAX_LINE = 128  # longest reply is a dump record, about 60 bytes

LOW_LIMIT = 20  # mg/dL: the meter shows LO below this
HIGH_LIMIT = 600  # mg/dL: the meter shows HI above this

# Meal flag and comment codes of a dump record (LifeScan's tables)
MEALS = {"N": "none", "B": "before", "A": "after"}
COMMENTS = ("none", "not_enough_food", "too_much_food", "mild_exercise",
            "hard_exercise", "medication", "stress", "illness", "feel_hypo",
            "menses", "vacation", "other")
_UNITS = {"MG/DL ": "mg/dL", "MMOL/L": "mmol/L"}
_UNIT_TEXT = {"mg/dL": "MG/DL ", "mmol/L": "MMOL/L"}
_MEAL_CODE = {"none": "N", "before": "B", "after": "A"}


def _printable(data):
    for b in data:
        if b < 0x20 or b > 0x7E:
            return False
    return True


def encode_command(command):
    # Bytes that send `command` (e.g. "DMP") to the meter.
    raw = command.encode()
    if not raw or not _printable(raw):
        raise ValueError("command must be printable ASCII: %r" % command)
    return b"\x11\r" + raw + b"\r"


READ_FIRMWARE = encode_command("DM?")
READ_SERIAL = encode_command("DM@")
READ_CLOCK = encode_command("DMF")
DUMP_RECORDS = encode_command("DMP")
READ_UNITS = encode_command("DMSU?")
READ_TIME_FORMAT = encode_command("DMST?")
CLEAR_MEMORY = encode_command("DMZ")  # erases every stored reading


def set_clock_command(timestamp):
    # DMT command setting the meter clock: DMTMM/DD/YY HH:MM:SS (24-hour).
    # "DOW","MM/DD/YY","HH:MM:SS   " -> MM/DD/YY HH:MM:SS
    return encode_command("DMT" + _date_time_fields(timestamp)[7:-4].replace('","', " "))


def decode_command(data):
    # What a meter simulator received: {"command": "DMT", "timestamp": ...}.
    #
    # `command` is the text between the framing (DM?, DM@, DMF, DMP, DMSU?, ...);
    # a DMT command also carries the timestamp it sets.
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("command must be bytes", "command", 0)
    if len(data) < 4 or data[0] != _DC1 or data[1] != _CR or data[-1] != _CR:
        raise DecodeError("not framed 0x11 0x0D ... 0x0D", "framing", 0)
    body = bytes(data[2:-1])
    if not _printable(body):
        raise DecodeError("non-printable byte in command", "command", 2)
    text = body.decode()
    out = {"command": text}  # type: dict[str, object]
    if text.startswith("DMT"):
        out["command"] = "DMT"
        arg = text[3:]
        if len(arg) != 17 or arg[8] != " ":
            raise DecodeError("DMT wants MM/DD/YY HH:MM:SS", "timestamp", 5)
        month, day, year = _triple(arg[:8], "/", "date", 5)
        hour, minute, second = _triple(arg[9:], ":", "time", 14)
        if not _clock_ok(month, day, hour, minute, second):
            raise DecodeError("date/time out of range", "timestamp", 5)
        out["timestamp"] = (2000 + year, month, day, hour, minute, second)
    return out


# ---------------------------------------------------------------------------
# Framing and line decoding

class LineFramer:
    # Bytes from the serial port -> reply lines (without CR/LF).
    #
    # receive_data(data) buffers; next_line() returns one line or NEED_DATA;
    # feed(data) does both and returns the complete lines. `discarded` counts
    # the bytes dropped while resynchronising.

    def __init__(self, max_line=MAX_LINE):
        self._max = max_line
        self._buf = bytearray()
        self._pos = 0
        self._line = bytearray()
        self._skipping = False
        self.discarded = 0

    def receive_data(self, data):
        if self._pos:
            self._buf = self._buf[self._pos:]
            self._pos = 0
        self._buf.extend(data)

    def next_line(self):
        buf = self._buf
        n = len(buf)
        i = self._pos
        while i < n:
            b = buf[i]
            i += 1
            if b == _CR or b == _LF:
                if self._skipping:
                    self._skipping = False
                elif self._line:
                    self._pos = i
                    line = bytes(self._line)
                    self._line = bytearray()
                    return line
            elif 0x20 <= b <= 0x7E:
                if self._skipping:
                    self.discarded += 1
                elif len(self._line) >= self._max:
                    self.discarded += len(self._line) + 1
                    self._line = bytearray()
                    self._skipping = True
                else:
                    self._line.append(b)
            else:  # garbage: what came before it is not a line
                self.discarded += len(self._line) + 1
                self._line = bytearray()
                self._skipping = False
        self._buf = bytearray()
        self._pos = 0
        return NEED_DATA

    def feed(self, data):
        self.receive_data(data)
        lines = []  # type: list[bytes]
        while True:
            line = self.next_line()
            if line is NEED_DATA:
                return lines
            lines.append(line)


def checksum(data):
    # The meter's line checksum: 16-bit sum of the bytes.
    total = 0
    for b in data:
        total += b
    return total & 0xFFFF


def decode_line(line):
    # One reply line (bytes, CR/LF stripped) -> dict with a "type" key.
    #
    # Types: firmware, serial, clock, units, time_format, cleared, dump_header,
    # record. Raises DecodeError (bad checksum, unknown or malformed reply).
    body = _checked_body(line)
    kind = body[0]
    if kind == "P":
        return _decode_record(body) if body[1:3] == ' "' else _decode_header(body)
    if kind == "F" or kind == "T":
        dow, ts = _when(_fields(body, 3), 0)
        return {"type": "clock", "command": "DM" + kind, "day_of_week": dow, "timestamp": ts}
    if kind == "?":
        return {"type": "firmware", "version": body[1:]}
    if kind == "@":
        if body[1:2] != " ":
            raise DecodeError("expected a space", "serial", 1)
        serial = _serial(body[2:], 2)
        # an Ultra2's serial ends in Y, an UltraLink's starts with H
        model = "Ultra2" if serial[-1] == "Y" else "UltraLink" if serial[0] == "H" else "Ultra"
        return {"type": "serial", "serial": serial, "model": model}
    if body[:4] == "SU?,":
        return {"type": "units", "unit": _unit(body[4:], 4)}
    if body[:4] == "ST?,":  # the answer names the format it uses
        if "AM/PM" in body or "24:00" in body:
            return {"type": "time_format", "format": "12h" if "AM/PM" in body else "24h"}
        raise DecodeError("unknown time format", "time_format", 4)
    if body == "Z":
        return {"type": "cleared"}
    raise DecodeError("unknown reply", "reply", 0)


class DumpParser:
    # Follows the lines of a DMP answer.
    #
    # add_line(line) returns the header dict first, then one reading per record
    # line; `done` is true once `count` records have arrived (check it when the
    # line goes quiet: a short dump is incomplete). Readings carry `index`, the
    # 1-based position in the dump (newest first on the meter: an index is not
    # stable across downloads, the timestamp is).

    def __init__(self):
        self.state = "header"  # header -> records -> done; error on a remote fault
        self.count = None
        self.serial = None
        self.display_unit = None
        self.received = 0

    @property
    def done(self):
        return self.state == "done"

    def add_line(self, line):
        if self.state == "error":
            raise DecodeError("dump already failed; ask for it again", "state", 0)
        try:
            return self._add(line)
        except DecodeError:
            self.state = "error"
            raise

    def _add(self, line):
        msg = decode_line(line)
        if self.state == "header":
            if msg["type"] != "dump_header":
                raise DecodeError("expected the dump header", "header", 0)
            self.count = msg["count"]
            self.serial = msg["serial"]
            self.display_unit = msg["display_unit"]
            self.state = "records" if self.count else "done"
            return msg
        if self.state != "records" or msg["type"] != "record":
            raise DecodeError("line after the dump or not a record", "record", 0)
        self.received += 1
        msg["index"] = self.received
        if self.received == self.count:
            self.state = "done"
        return msg


def parse_dump(data):
    # A whole DMP answer (bytes) -> {"serial", "display_unit", "count",
    # "readings"}. Raises DecodeError if it is corrupt or incomplete.
    framer = LineFramer()
    parser = DumpParser()
    readings = []
    for line in framer.feed(data):
        msg = parser.add_line(line)
        if msg["type"] == "record":
            readings.append(msg)
    if not parser.done:
        raise DecodeError("dump incomplete: %d of %s records" % (
            parser.received, parser.count), "records", parser.received)
    return {"serial": parser.serial, "display_unit": parser.display_unit,
            "count": parser.count, "readings": readings}


# ---------------------------------------------------------------------------
# Field parsing

def _checked_body(line):
    if not isinstance(line, (bytes, bytearray)):
        raise DecodeError("line must be bytes", "line", 0)
    n = len(line)
    if not _printable(line):
        raise DecodeError("non-printable byte", "line", 0)
    if n < 6 or line[n - 5] != 0x20:
        raise DecodeError("no checksum", "checksum", max(n - 5, 0))
    given = 0
    for i in range(n - 4, n):
        d = _HEX.find(chr(line[i]))
        if d < 0:
            raise DecodeError("checksum is not 4 hex digits", "checksum", i)
        given = given * 16 + d
    body = bytes(line[:n - 5])
    computed = checksum(body)
    if given != computed:
        raise DecodeError("checksum %04X, computed %04X" % (given, computed),
                          "checksum", n - 4)
    return body.decode()


_HEX = "0123456789ABCDEF"
_DIGITS = "0123456789"


def _int(text, field, offset):
    if not text:
        raise DecodeError("expected digits", field, offset)
    value = 0
    for i in range(len(text)):
        d = _DIGITS.find(text[i])
        if d < 0:
            raise DecodeError("expected a digit", field, offset + i)
        value = value * 10 + d
    return value


def _triple(text, sep, field, offset):
    if len(text) != 8 or text[2] != sep or text[5] != sep:
        raise DecodeError("expected NN%sNN%sNN" % (sep, sep), field, offset)
    return (_int(text[0:2], field, offset), _int(text[3:5], field, offset + 3),
            _int(text[6:8], field, offset + 6))


def _clock_ok(month, day, hour, minute, second):
    return 1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 59


def _fields(body, count):
    # Comma-separated fields after "<letter> " as (text, offset) pairs.
    if body[1:2] != " ":
        raise DecodeError("expected a space after the reply letter", "reply", 1)
    parts = body[2:].split(",")
    if len(parts) != count:
        raise DecodeError("expected %d fields, got %d" % (count, len(parts)), "fields", 2)
    out = []
    offset = 2
    for p in parts:
        out.append((p, offset))
        offset += len(p) + 1
    return out


def _quoted(item, field, length):
    text, offset = item
    if len(text) != length + 2 or text[0] != '"' or text[-1] != '"':
        raise DecodeError("expected %d characters in quotes" % length, field, offset)
    return text[1:-1], offset + 1


def _when(fields, i):
    # Day of week, date and time fields from fields[i] -> (dow, timestamp).
    dow, offset = _quoted(fields[i], "day_of_week", 3)
    for c in dow:
        if not "A" <= c <= "Z":
            raise DecodeError("day of week is not letters", "day_of_week", offset)
    text, offset = _quoted(fields[i + 1], "date", 8)
    month, day, yy = _triple(text, "/", "date", offset)
    if not _clock_ok(month, day, 0, 0, 0):
        raise DecodeError("date out of range", "date", offset)
    text, offset = _quoted(fields[i + 2], "time", 11)
    hour, minute, second = _triple(text[:8], ":", "time", offset)
    if text[8:] != "   ":  # 24-hour even on a meter that shows AM/PM
        raise DecodeError("time is HH:MM:SS and 3 spaces", "time", offset + 8)
    if not _clock_ok(month, day, hour, minute, second):
        raise DecodeError("time out of range", "time", offset)
    return dow, (2000 + yy, month, day, hour, minute, second)


def _serial(text, offset):
    serial, offset = _quoted((text, offset), "serial", 9)
    for i in range(9):
        c = serial[i]
        if not ("0" <= c <= "9" or "A" <= c <= "Z"):
            raise DecodeError("serial is not A-Z/0-9", "serial", offset + i)
    return serial


def _unit(text, offset):
    unit, offset = _quoted((text, offset), "unit", 6)
    if unit not in _UNITS:
        raise DecodeError("unknown unit %r" % unit, "unit", offset)
    return _UNITS[unit]


def _decode_header(body):
    f = _fields(body, 3)
    text, offset = f[0]
    if len(text) != 3:
        raise DecodeError("record count is 3 digits", "count", offset)
    return {"type": "dump_header", "count": _int(text, "count", offset),
            "serial": _serial(*f[1]), "display_unit": _unit(*f[2])}


def _decode_record(body):
    f = _fields(body, 7)
    dow, timestamp = _when(f, 0)
    res, offset = _quoted(f[3], "result", 6)
    flags = []
    if res[0] == "C":
        flags.append("control_solution")
    if res[0] not in "C " or res[1] != " " or res[5] not in "? ":
        raise DecodeError("result is [C ] NNN[? ]", "result", offset)
    value = _int(res[2:5], "result", offset + 2)
    if res[5] == "?":
        flags.append("parity_error")
    if value < LOW_LIMIT:
        flags.append("lo")
    elif value > HIGH_LIMIT:
        flags.append("hi")
    meal, offset = _quoted(f[4], "meal", 1)
    if meal not in MEALS:
        raise DecodeError("meal flag is N, B or A", "meal", offset)
    text, offset = _quoted(f[5], "comment", 2)
    comment = _int(text, "comment", offset)
    if comment >= len(COMMENTS):
        raise DecodeError("unknown comment code %d" % comment, "comment", offset)
    text, offset = f[6]
    if len(text) != 3 or text[0] != " ":
        raise DecodeError("expected ' NN'", "reserved", offset)
    _int(text[1:], "reserved", offset + 1)
    return {"type": "record", "timestamp": timestamp, "day_of_week": dow,
            "glucose": value, "unit": "mg/dL", "flags": flags,
            "meal": MEALS[meal], "comment": COMMENTS[comment], "reserved": text[1:]}


# ---------------------------------------------------------------------------
# Meter side: reply lines with correct checksums (simulators and tests)

def encode_line(body):
    # A reply line: body, space, 4-hex-digit checksum, CR LF.
    raw = body.encode()
    if not raw or not _printable(raw):
        raise ValueError("reply body must be printable ASCII: %r" % body)
    return raw + (" %04X\r\n" % checksum(raw)).encode()


_DOW = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DOW_T = (0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4)


def day_of_week(year, month, day):
    # Three-letter day name as the meter prints it.
    if month < 3:
        year -= 1
    return _DOW[(year + year // 4 - year // 100 + year // 400 + _DOW_T[month - 1] + day) % 7]


def _date_time_fields(timestamp):
    year, month, day, hour, minute, second = timestamp
    if not 2000 <= year <= 2099 or not _clock_ok(month, day, hour, minute, second):
        raise ValueError("not a date/time the meter can hold: %r" % (timestamp,))
    return '"%s","%02d/%02d/%02d","%02d:%02d:%02d   "' % (
        day_of_week(year, month, day), month, day, year - 2000, hour, minute, second)


def encode_clock_reply(timestamp, letter="F"):
    # Answer to DMF ("F") or DMT ("T").
    return encode_line("%s %s" % (letter, _date_time_fields(timestamp)))


def encode_firmware_reply(version="P02.00.00 30/08/06"):
    return encode_line("?" + version)


def encode_serial_reply(serial):
    return encode_line('@ "%s"' % serial)


def encode_units_reply(unit="mg/dL"):
    return encode_line('SU?,"%s"' % _UNIT_TEXT[unit])


def encode_time_format_reply(fmt="24h"):
    return encode_line('ST?,"%s"' % ("AM/PM" if fmt == "12h" else "24:00"))


def encode_cleared_reply():
    return encode_line("Z")


def encode_dump_header(count, serial, display_unit="mg/dL"):
    if not 0 <= count <= 999 or len(serial) != 9:
        raise ValueError("count 0-999 and a 9-character serial")
    return encode_line('P %03d,"%s","%s"' % (count, serial, _UNIT_TEXT[display_unit]))


def encode_record(reading):
    # A dump record line from a reading dict (the keys decode_line gives:
    # timestamp, glucose, flags, meal, comment); hi/lo follow from the value.
    value = reading["glucose"]
    if not 0 <= value <= 999:
        raise ValueError("glucose is 3 digits (mg/dL): %r" % value)
    flags = reading.get("flags", ())
    return encode_line('P %s,"%s %03d%s","%s","%02d", %s' % (
        _date_time_fields(reading["timestamp"]),
        "C" if "control_solution" in flags else " ", value,
        "?" if "parity_error" in flags else " ", _MEAL_CODE[reading.get("meal", "none")],
        COMMENTS.index(reading.get("comment", "none")), reading.get("reserved", "00")))


def encode_dump(serial, readings, display_unit="mg/dL"):
    # A whole DMP answer: header then one line per reading (in the given order).
    out = [encode_dump_header(len(readings), serial, display_unit)]
    for r in readings:
        out.append(encode_record(r))
    return b"".join(out)
