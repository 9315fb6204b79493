# Known deviations of real instruments from the Bluetooth specification, and
# the corrections applied around decoding.
#
# Real devices break the spec: a cuff that sends a user id without setting its
# flag bit and its pulse rate big-endian, a scale whose raw weight counts
# 0.05 kg instead of 0.005 kg. Without a correction the first gives a
# DecodeError (trailing byte) and a pulse that decodes as NRes or 0 (flagged
# by plausibility), but the scale gives a plausible-looking wrong number (70 kg
# read as 7 kg): only knowing the model can fix it. So:
#   - QUIRKS names each known deviation and what it does;
#   - TABLE maps (manufacturer, model) as read from Device Information 0x180A
#     (lower-cased) to the quirks of that model, from field reports;
#   - a paired instrument's configuration may add quirks (the technician sets
#     them at pairing when a new model misbehaves, before TABLE learns it).
# fix_bytes() runs before device_drivers.gatt.decode, fix_values() after; the
# reading then carries `quirk:<name>` flags so the correction is visible.

# name -> characteristic it applies to
QUIRKS = {
    "bp_user_id_without_flag": 0x2A35,  # a user id byte is sent, flag bit 3 is not set
    "bp_pulse_big_endian": 0x2A35,  # the pulse rate SFLOAT is sent big-endian
    "weight_0_05kg_steps": 0x2A9D,  # raw weight in 0.05 kg (or 0.1 lb) steps
}

# (manufacturer, model) lower-cased -> quirk names. Add a model only from a
# field report naming it, with the report's reference in a comment.
TABLE = {}  # type: dict[tuple[str, str], tuple[str, ...]]


def quirks_for(manufacturer, model, extra=None, table=None):
    """The quirks of an instrument: its model's table entry plus configured ones."""
    table = TABLE if table is None else table
    key = ((manufacturer or "").strip().lower(), (model or "").strip().lower())
    found = list(table.get(key, ()))
    for name in extra or ():
        if name not in QUIRKS:
            raise ValueError("unknown quirk %r" % name)
        if name not in found:
            found.append(name)
    return found


def _bp_pulse_offset(flags):
    off = 7
    if flags & 0x02:
        off += 7
    return off


def fix_bytes(uuid16, data, quirks):
    """Raw characteristic bytes corrected to what the spec says they mean."""
    if not quirks:
        return data
    if uuid16 == 0x2A35 and data:
        flags = data[0]
        buf = bytearray(data)
        if "bp_user_id_without_flag" in quirks and not flags & 0x08:
            # the spec length without a user id, plus the one unflagged byte
            expected = 7 + (7 if flags & 0x02 else 0) + (2 if flags & 0x04 else 0) + \
                (2 if flags & 0x10 else 0)
            if len(buf) == expected + 1:  # the byte is in its spec place
                flags |= 0x08
                buf[0] = flags
        if "bp_pulse_big_endian" in quirks and flags & 0x04:
            off = _bp_pulse_offset(flags)
            if off + 2 <= len(buf):
                buf[off], buf[off + 1] = buf[off + 1], buf[off]
        return bytes(buf)
    return data


def fix_values(uuid16, decoded, quirks):
    """A decoded dict corrected for deviations that decode without error."""
    if uuid16 == 0x2A9D and "weight_0_05kg_steps" in quirks:
        w = decoded.get("weight")
        if w is not None:
            decoded["weight"] = round(w * 10, 2)
    return decoded


def flags_of(uuid16, quirks):
    """`quirk:<name>` flags for the quirks that apply to this characteristic."""
    return ["quirk:" + q for q in quirks if QUIRKS.get(q) == uuid16]
