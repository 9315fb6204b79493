# mpy-portable
# LifeScan OneTouch Ultra2: commands, checksummed reply lines, DMP dumps, clock.
# The header and three records are a real meter's, as published in the
# Tidepool uploader's driver; their checksums verify.
from device_drivers import DecodeError
from device_drivers import onetouch as ot
from tests.portable import raises

HEADER = b'P 003,"GMF600DCY","MG/DL " 05A6'
REC1 = b'P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 00 09B6'
REC2 = b'P "SAT","03/21/15","16:42:11   ","  105 ","B","02", 00 099F'
REC3 = b'P "SAT","03/21/15","16:39:46   ","  176 ","N","02", 00 09C1'
DUMP = HEADER + b"\r\n" + REC1 + b"\r\n" + REC2 + b"\r\n" + REC3 + b"\r\n"
TS = (2026, 11, 29, 9, 5, 0)


def _d(raw):
    """Decode an encoder's line (strip its CR LF, as the framer does)."""
    return ot.decode_line(raw[:-2])


def _bad(body):
    """The DecodeError for a well-checksummed line with this body."""
    return raises(DecodeError, ot.decode_line, ot.encode_line(body)[:-2])


def test_checksum_sums_the_bytes_before_the_space():
    body = HEADER[:-5]
    assert ot.checksum(body) == 0x05A6 and ot.checksum(REC1[:-5]) == 0x09B6
    assert ot.checksum(body + b" ") != 0x05A6  # not the space, not CR LF
    assert ot.encode_line(body.decode()) == HEADER + b"\r\n"
    assert ot.checksum(b"\xff" * 300) == (255 * 300) & 0xFFFF


def test_commands_on_the_wire():
    assert (ot.READ_FIRMWARE, ot.READ_SERIAL, ot.DUMP_RECORDS, ot.READ_CLOCK) == (
        b"\x11\rDM?\r", b"\x11\rDM@\r", b"\x11\rDMP\r", b"\x11\rDMF\r")
    assert ot.READ_UNITS == b"\x11\rDMSU?\r" and ot.CLEAR_MEMORY == b"\x11\rDMZ\r"
    assert ot.set_clock_command(TS) == b"\x11\rDMT11/29/26 09:05:00\r"
    for ts in ((1999, 1, 1, 0, 0, 0), (2026, 13, 1, 0, 0, 0)):
        raises(ValueError, ot.set_clock_command, ts)
    raises(ValueError, ot.encode_command, "DM\r")
    assert ot.decode_command(ot.DUMP_RECORDS) == {"command": "DMP"}
    assert ot.decode_command(ot.set_clock_command(TS)) == {"command": "DMT", "timestamp": TS}
    for bad in (b"DMP\r", b"\x11\rDMP", b"\x11\r\x00\r", b"\x11\rDMT1/2/3\r", "DMP",
                b"\x11\rDMT13/29/26 09:05:00\r"):
        raises(DecodeError, ot.decode_command, bad)


def test_dump_from_a_real_meter():
    assert ot.decode_line(HEADER) == {"type": "dump_header", "count": 3,
                                      "serial": "GMF600DCY", "display_unit": "mg/dL"}
    r = ot.decode_line(REC1)
    assert r["timestamp"] == (2015, 3, 21, 16, 45, 24) and r["day_of_week"] == "SAT"
    assert (r["glucose"], r["unit"], r["flags"], r["meal"], r["comment"]) == (
        81, "mg/dL", [], "none", "mild_exercise")
    d = ot.parse_dump(DUMP)
    assert (d["serial"], d["count"], d["display_unit"]) == ("GMF600DCY", 3, "mg/dL")
    assert [(r["index"], r["glucose"], r["meal"]) for r in d["readings"]] == [
        (1, 81, "none"), (2, 105, "before"), (3, 176, "none")]
    assert ot.encode_dump("GMF600DCY", d["readings"]) == DUMP  # byte for byte


def test_checksum_errors_name_the_field():
    e = raises(DecodeError, ot.decode_line, REC1[:-1] + b"7")
    assert e.field == "checksum" and e.offset == len(REC1) - 4
    # glucometerutils' vectors: missing, short, wrong, non-hex checksum
    for bad in (b"INVALID", b".", b"% 2500", b"% 13AZ", b"", b"P 05A6", b"Z 5A"):
        assert raises(DecodeError, ot.decode_line, bad).field == "checksum"
    for thing in ("P 0050", b"\x01" + HEADER):
        assert raises(DecodeError, ot.decode_line, thing).field == "line"


def test_other_replies():
    assert ot.decode_line(b'@ "12345678O" 0297') == {  # glucometerutils vector
        "type": "serial", "serial": "12345678O", "model": "Ultra"}
    assert _d(ot.encode_serial_reply("GMF600DCY"))["model"] == "Ultra2"
    assert _d(ot.encode_serial_reply("HAB12345C"))["model"] == "UltraLink"
    assert _d(ot.encode_firmware_reply("P02.00.00 30/08/06"))["version"] == "P02.00.00 30/08/06"
    assert _d(ot.encode_units_reply("mmol/L")) == {"type": "units", "unit": "mmol/L"}
    assert _d(ot.encode_units_reply())["unit"] == "mg/dL"
    assert _d(ot.encode_time_format_reply("12h"))["format"] == "12h"
    assert _d(ot.encode_time_format_reply("24h"))["format"] == "24h"
    assert _d(ot.encode_cleared_reply()) == {"type": "cleared"}
    for body, field in (('@ "12345678o"', "serial"), ('@"123456789"', "serial"),
                        ('SU?,"MG/L  "', "unit"), ('ST?,"XX"', "time_format"),
                        ("Q what", "reply")):
        assert _bad(body).field == field


def test_clock_replies():
    t = _d(ot.encode_clock_reply(TS, "T"))
    assert (t["command"], t["day_of_week"], t["timestamp"]) == ("DMT", "SUN", TS)
    assert _d(ot.encode_clock_reply(TS))["command"] == "DMF"
    for body, field in (('F "SUN","11/29/26","01:05:00 PM"', "time"),
                        ('F "SUN","11/32/26","09:05:00   "', "date"),
                        ('F "SUN","00/29/26","09:05:00   "', "date"),
                        ('F "SUN","11/29/26","24:05:00   "', "time"),
                        ('F "Sun","11/29/26","09:05:00   "', "day_of_week"),
                        ('F "SUN","11-29-26","09:05:00   "', "date"),
                        ('F "SUN","11/29/26"', "fields"), ('F"SUN",1,2', "reply")):
        assert _bad(body).field == field


def _rec(value, **kw):
    r = {"timestamp": TS, "glucose": value}
    r.update(kw)
    return _d(ot.encode_record(r))


def test_record_flags():
    assert _rec(120, flags=["control_solution"])["flags"] == ["control_solution"]
    assert _rec(120, flags=["parity_error"])["flags"] == ["parity_error"]
    assert _rec(19)["flags"] == ["lo"] and _rec(20)["flags"] == []
    assert _rec(601)["flags"] == ["hi"] and _rec(600)["flags"] == []
    assert _rec(601)["glucose"] == 601  # flagged, never clamped
    r = _rec(95, meal="after", comment="other")
    assert r["meal"] == "after" and r["comment"] == "other"
    raises(ValueError, ot.encode_record, {"timestamp": TS, "glucose": 1000})


def test_malformed_record_fields():
    good = 'P "SUN","11/29/26","09:05:00   ","  120 ","N","00", 00'
    assert _d(ot.encode_line(good))["glucose"] == 120
    for old, new, field in (("  120 ", "D 120 ", "result"), ("  120 ", "  1x0 ", "result"),
                            ("  120 ", "  120!", "result"), ("  120 ", " 120 ", "result"),
                            ('"N"', '"X"', "meal"), ('"00"', '"12"', "comment"),
                            (", 00", ",00", "reserved"), (", 00", ", 0a", "reserved"),
                            ('"SUN"', '"SU1"', "day_of_week"), (", 00", ', 00,"x"', "fields")):
        assert _bad(good.replace(old, new)).field == field, new


def test_framer_resynchronises():
    f = ot.LineFramer()
    assert f.next_line() is ot.NEED_DATA
    # the meter's DC1 CR, garbage, then a line split across feeds
    assert f.feed(b"\x11\r\x00\xffjunk\x07" + HEADER[:10]) == []
    assert f.feed(HEADER[10:] + b"\r") == [HEADER]
    assert f.feed(b"\n\n\r" + REC1 + b"\r\n" + REC2) == [REC1]
    assert f.feed(b"\n") == [REC2] and f.discarded == 8  # DC1, NUL, 0xFF, junk, BEL
    f = ot.LineFramer(max_line=40)  # an overlong line is dropped up to CR/LF
    assert f.feed(b"x" * 100 + b"\r\n" + REC1[:40] + b"\n" + b"ok\r") == [REC1[:40], b"ok"]
    assert f.discarded == 100


def test_dump_parser_states():
    p = ot.DumpParser()
    assert p.add_line(HEADER)["count"] == 3 and not p.done
    assert p.add_line(REC1)["index"] == 1
    raises(DecodeError, p.add_line, REC2[:-1] + b"0")
    assert p.state == "error"
    raises(DecodeError, p.add_line, REC3)  # stays failed until asked again
    raises(DecodeError, ot.DumpParser().add_line, REC1)  # a record before the header
    p = ot.DumpParser()
    p.add_line(ot.encode_dump_header(0, "GMF600DCY")[:-2])
    assert p.done and p.count == 0
    raises(DecodeError, p.add_line, REC1)  # nothing may follow a complete dump
    p = ot.DumpParser()
    p.add_line(HEADER)
    raises(DecodeError, p.add_line, ot.encode_cleared_reply()[:-2])


def test_parse_dump_incomplete_or_corrupt():
    e = raises(DecodeError, ot.parse_dump, DUMP[:-len(REC3) - 2])
    assert e.field == "records" and e.offset == 2
    for bad in (b"", DUMP.replace(b"105", b"106"), DUMP + REC1 + b"\r\n"):
        raises(DecodeError, ot.parse_dump, bad)
    for body, field in (('P 1,"GMF600DCY","MG/DL "', "count"),
                        ('P 003,"GMF600DC","MG/DL "', "serial"),
                        ('P 003,"GMF600DC-","MG/DL "', "serial"),
                        ('P 003,"GMF600DCY","KG    "', "unit")):
        assert _bad(body).field == field


def test_encoders_refuse_what_the_meter_cannot_send():
    for body in ("", "a\rb"):
        raises(ValueError, ot.encode_line, body)
    raises(ValueError, ot.encode_dump_header, 1000, "GMF600DCY")
    raises(KeyError, ot.encode_units_reply, "mg")
    assert ot.day_of_week(2000, 2, 29) == "TUE" and ot.day_of_week(2026, 1, 1) == "THU"
