# Ed25519 signature verification (RFC 8032) and the SHA-512 it needs, in
# plain Python for MicroPython, which has neither (its hashlib has only
# SHA-256; its integers are arbitrary precision). firmware/board/ota.py loads
# it only while checking a bundle, so its ~10 KB of RAM are not kept while the
# app runs. Verification only: the gateway never signs. Cofactorless check
# ([S]B - [h]A encodes to R), as OpenSSL does; a manifest check is about 14 ms
# under the MicroPython Unix port on a PC (docs/firmware.md, "Measured").

# --- SHA-512 (MicroPython's hashlib has only SHA-256) ----------------------------

_M64 = 0xFFFFFFFFFFFFFFFF
_K512 = (
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
)
_H512 = (
    0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
    0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
)


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def sha512(msg):
    """SHA-512 digest of bytes (FIPS 180-4), in plain Python."""
    n = len(msg)
    data = bytes(msg) + b"\x80" + b"\x00" * ((111 - n) % 128) + (n * 8).to_bytes(16, "big")
    h = list(_H512)
    for off in range(0, len(data), 128):
        w = [int.from_bytes(data[off + 8 * i:off + 8 * i + 8], "big") for i in range(16)]
        a, b, c, d, e, f, g, hh = h
        for i in range(80):
            if i >= 16:  # message schedule in a 16-word ring
                x, y = w[(i - 15) & 15], w[(i - 2) & 15]
                s0 = _rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)
                s1 = _rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6)
                w[i & 15] = (w[i & 15] + s0 + w[(i - 7) & 15] + s1) & _M64
            t1 = (hh + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41))
                  + ((e & f) ^ ((e ^ _M64) & g)) + _K512[i] + w[i & 15])
            t2 = (_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))
            hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M64, c, b, a, (t1 + t2) & _M64
        v8 = (a, b, c, d, e, f, g, hh)
        h = [(h[j] + v8[j]) & _M64 for j in range(8)]
    out = b""
    for v in h:
        out += v.to_bytes(8, "big")
    return out


# --- Ed25519 verification (RFC 8032), extended coordinates -----------------------

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = 2 * _D % _P
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
BASE = (_BX, _BY, 1, _BX * _BY % _P)
_ZERO = (0, 1, 1, 0)


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p):
    x1, y1, z1, _ = p
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def mul2(s, p, t, q):
    """[s]p + [t]q (Shamir's trick: one pass of doublings)."""
    pq = _add(p, q)
    r = _ZERO
    top = 255  # MicroPython ints have no bit_length()
    while top >= 0 and not ((s | t) >> top) & 1:
        top -= 1
    for i in range(top, -1, -1):
        r = _double(r)
        bs = (s >> i) & 1
        bt = (t >> i) & 1
        if bs and bt:
            r = _add(r, pq)
        elif bs:
            r = _add(r, p)
        elif bt:
            r = _add(r, q)
    return r


def encode_point(p):
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x = x * zi % _P
    y = y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode_point(b):
    """The curve point encoded in 32 bytes, or None."""
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        return (0, y, 1, 0)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P:
            return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def verify(public, msg, sig):
    """True when sig (64 bytes) is public's (32 bytes) Ed25519 signature of msg."""
    if len(sig) != 64 or len(public) != 32:
        return False
    a = decode_point(public)
    if a is None:
        return False
    r = sig[:32]
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(sha512(r + public + msg), "little") % _L
    neg_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    return encode_point(mul2(s, BASE, h, neg_a)) == bytes(r)
