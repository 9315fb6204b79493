# A small HTTP/1.1 client for one job: fetching byte ranges of a file (the
# OTA bundle, docs/protocol.md "OTA") over asyncio.open_connection, plain or
# TLS. Portable: the same code runs under MicroPython (board, virtual
# gateway) and CPython. ota_agent.py feeds what arrives to ota.Receiver, so a
# download cut anywhere resumes at the bytes already on flash.
#
#   await get_range(url, start, end, sink, ssl=None)   bytes start..end-1
#
# One connection per range (`Connection: close`): no keep-alive state to get
# wrong, and a proxy or a radio that drops long transfers costs one range.
# The body is streamed to `sink(offset, data)` in CHUNK pieces, never held
# whole. Errors are HttpError with a code for the command's result:
# `http_status` (4xx/5xx, detail = the status), `bad_response` (not HTTP, a
# range the server did not honour), `download_failed` (network, timeout).
import asyncio

CHUNK = 1024
TIMEOUT_S = 20
MAX_HEADER = 2048


class HttpError(Exception):
    def __init__(self, code, detail, status=None):
        super().__init__("%s: %s" % (code, detail))
        self.code = code
        self.detail = detail
        self.status = status

    @property
    def transient(self):
        """Worth trying again: the network, or the server busy (5xx)."""
        return self.code == "download_failed" or (self.status is not None
                                                  and self.status >= 500)


def parse_url(url):
    """(tls, host, port, path) of an http:// or https:// URL."""
    if url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    elif url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    else:
        raise HttpError("bad_url", "only http:// and https:// URLs")
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    if not hostport or " " in url:
        raise HttpError("bad_url", "no host")
    if hostport.startswith("["):  # [IPv6]:port
        j = hostport.find("]")
        host, tail = hostport[1:j], hostport[j + 1:]
        if tail.startswith(":"):
            port = int(tail[1:])
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        try:
            port = int(p)
        except ValueError:
            raise HttpError("bad_url", "port %r" % p)
    else:
        host = hostport
    return tls, host, port, path


async def _readline(reader):
    line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
    if len(line) > MAX_HEADER:
        raise HttpError("bad_response", "header line too long")
    return line


def _content_range(value):
    """(first, last, total) of `bytes a-b/total`."""
    try:
        _unit, rng = value.strip().split(" ", 1)
        span, total = rng.split("/", 1)
        a, b = span.split("-", 1)
        return int(a), int(b), (None if total == "*" else int(total))
    except ValueError:
        raise HttpError("bad_response", "Content-Range %r" % value)


async def get_range(url, start, end, sink, ssl=None, headers=None):
    """GET bytes start..end-1 of `url` and give them to sink(offset, data) in
    order. Returns the resource's total size when the server says it."""
    tls, host, port, path = parse_url(url)
    if tls and ssl is None:
        ssl = True  # the platform's default context
    writer = None
    try:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ssl if tls else None), TIMEOUT_S)
            req = ("GET %s HTTP/1.1\r\nHost: %s\r\nRange: bytes=%d-%d\r\n"
                   "User-Agent: ummc-gateway\r\nConnection: close\r\n" % (
                       path, host, start, end - 1))
            if headers:
                for k in headers:
                    req += "%s: %s\r\n" % (k, headers[k])
            writer.write((req + "\r\n").encode())
            await writer.drain()
            status_line = await _readline(reader)
        except (OSError, asyncio.TimeoutError) as e:
            raise HttpError("download_failed", "%s %s" % (type(e).__name__, e))
        parts = status_line.decode().split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError("bad_response", "not an HTTP response")
        try:
            status = int(parts[1])
        except ValueError:
            raise HttpError("bad_response", "status %r" % parts[1])
        hdrs = {}
        try:
            for _ in range(64):
                line = await _readline(reader)
                if line in (b"\r\n", b"\n", b""):
                    break
                k, _sep, v = line.decode().partition(":")
                hdrs[k.strip().lower()] = v.strip()
        except (OSError, asyncio.TimeoutError) as e:
            raise HttpError("download_failed", "%s in the headers" % type(e).__name__)
        if status not in (200, 206):
            raise HttpError("http_status", "HTTP %d from the bundle server" % status, status)
        total = None
        offset = 0
        if status == 206:
            first, last, total = _content_range(hdrs.get("content-range", ""))
            if first != start or last > end - 1:
                raise HttpError("bad_response", "asked bytes %d-%d, got %d-%d"
                                % (start, end - 1, first, last))
            want = last + 1 - first
            offset = start
        else:  # the whole resource: keep only our range
            want = int(hdrs.get("content-length", "-1"))
            total = want if want >= 0 else None
        if want < 0:
            raise HttpError("bad_response", "no Content-Length")
        got = 0
        while got < want:
            try:
                data = await asyncio.wait_for(reader.read(min(CHUNK, want - got)), TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as e:
                raise HttpError("download_failed", "%s after %d bytes"
                                % (type(e).__name__, got))
            if not data:
                raise HttpError("download_failed", "connection closed after %d of %d bytes"
                                % (got, want))
            lo, hi = offset, offset + len(data)  # position of these bytes in the file
            a, b = max(lo, start), min(hi, end)
            if a < b:
                sink(a, data[a - lo:b - lo])
            offset = hi
            got += len(data)
            if status == 200 and offset >= end:
                break
        return total
    finally:
        if writer is not None:
            try:
                writer.close()
                await writer.wait_closed()
            except Exception:
                pass
