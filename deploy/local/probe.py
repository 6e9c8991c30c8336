#!/usr/bin/env python3
"""Tiny stdlib-only wire clients used by deploy/local/stack.sh for readiness checks.

  probe.py kafka-topics [HOST:PORT]        list topics via a Kafka Metadata (v4) request;
                                           fails unless at least one broker is registered; logs
                                           in (SASL/PLAIN) with TURNPIKE_KAFKA_USERNAME /
                                           TURNPIKE_KAFKA_PASSWORD when they are set
  probe.py cql [HOST:PORT] STATEMENT...    run CQL statements over native protocol v4 and
                                           print result rows (tab-separated); logs in with
                                           TURNPIKE_CQL_USERNAME / TURNPIKE_CQL_PASSWORD when the
                                           server asks (environment, to keep them off `ps`);
                                           a STATEMENT of "-" reads statements from stdin, one
                                           per line (for statements that hold secrets)
  probe.py http-ok URL                     exit 0 iff GET URL returns 200; logs in (HTTP basic)
                                           with TURNPIKE_SCHEMA_REGISTRY_USERNAME /
                                           TURNPIKE_SCHEMA_REGISTRY_PASSWORD when they are set

No third-party packages: it must run on a fresh machine before anything is installed.
Exit status: 0 on success, 1 on a server-side error, 2 on a connection/protocol failure, 3 when the
CQL login is refused.
"""
import base64
import os
import socket
import struct
import sys
import urllib.request
import uuid

TIMEOUT = 5.0


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _split_addr(addr, default_port):
    host, _, port = addr.rpartition(":")
    if not host:
        return addr, default_port
    return host, int(port)


class Reader:
    def __init__(self, data):
        self.d = data
        self.o = 0

    def take(self, n):
        if self.o + n > len(self.d):
            raise ValueError("truncated response")
        b = self.d[self.o:self.o + n]
        self.o += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def kstr(self):  # Kafka nullable string (int16 length)
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def cstr(self):  # CQL [string] (uint16 length)
        return self.take(self.u16()).decode()

    def cbytes(self):  # CQL [bytes] (int32 length, <0 = null)
        n = self.i32()
        return None if n < 0 else self.take(n)


# --------------------------------------------------------------------------- Kafka
def _kafka_call(sock, api_key, api_version, corr, payload):
    client_id = b"turnpike-probe"
    body = struct.pack(">hhih", api_key, api_version, corr, len(client_id)) + client_id + payload
    sock.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    r = Reader(_recv_exact(sock, size))
    if r.i32() != corr:
        raise ValueError("correlation id mismatch")
    return r


class KafkaLoginRefused(Exception):
    pass


def _kafka_sasl_plain(sock, user, password):
    mech = b"PLAIN"
    r = _kafka_call(sock, 17, 1, 101, struct.pack(">h", len(mech)) + mech)  # SaslHandshake v1
    if r.i16() != 0:
        raise KafkaLoginRefused("the broker does not offer SASL/PLAIN")
    token = b"\0" + user.encode() + b"\0" + password.encode()
    r = _kafka_call(sock, 36, 1, 102, struct.pack(">i", len(token)) + token)  # SaslAuthenticate v1
    err = r.i16()
    if err != 0:
        raise KafkaLoginRefused("login as %s refused: %s" % (user, r.kstr()))


def kafka_topics(addr):
    host, port = _split_addr(addr, 9092)
    api_key, api_version, corr = 3, 4, 1  # Metadata v4 (Kafka 4 removed v0-v3)
    payload = struct.pack(">i", -1)  # topics = null -> all topics
    payload += b"\x00"  # allow_auto_topic_creation = false
    user = os.environ.get("TURNPIKE_KAFKA_USERNAME", "")
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        if user:
            try:
                _kafka_sasl_plain(s, user, os.environ.get("TURNPIKE_KAFKA_PASSWORD", ""))
            except KafkaLoginRefused as e:
                print("kafka: %s" % e, file=sys.stderr)
                return 3
        r = _kafka_call(s, api_key, api_version, corr, payload)
    r.i32()  # throttle_time_ms
    brokers = []
    for _ in range(r.i32()):
        node_id = r.i32()
        bhost = r.kstr()
        bport = r.i32()
        r.kstr()  # rack
        brokers.append((node_id, bhost, bport))
    r.kstr()  # cluster_id
    controller = r.i32()
    topics = []
    for _ in range(r.i32()):
        err = r.i16()
        name = r.kstr()
        internal = r.i8()
        for _ in range(r.i32()):
            r.i16(); r.i32(); r.i32()
            r.take(4 * r.i32())
            r.take(4 * r.i32())
        if err == 0 and not internal:
            topics.append(name)
    if not brokers or controller < 0:
        print("kafka: no broker registered yet", file=sys.stderr)
        return 1
    for t in sorted(topics):
        print(t)
    return 0


# --------------------------------------------------------------------------- CQL
def _cql_frame(opcode, stream, body):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def _cql_read(sock):
    hdr = _recv_exact(sock, 9)
    _ver, flags, _stream, opcode, length = struct.unpack(">BBhBi", hdr)
    r = Reader(_recv_exact(sock, length))
    # Optional parts before the message body, in the protocol's order: tracing id, warnings (e.g. an
    # aggregate without a partition key), custom payload. Skipped, or the body would be read from them.
    if flags & 0x02:
        r.take(16)
    if flags & 0x08:
        for _ in range(r.u16()):
            print("cql warning: " + r.cstr(), file=sys.stderr)
    if flags & 0x04:
        for _ in range(r.u16()):
            r.cstr()
            r.cbytes()
    return opcode, r


def _cql_type(r):
    tid = r.u16()
    if tid == 0x0000:
        return ("custom", r.cstr())
    if tid in (0x20, 0x22):  # list, set
        return (tid, _cql_type(r))
    if tid == 0x21:  # map
        return (tid, _cql_type(r), _cql_type(r))
    if tid == 0x30:  # UDT
        r.cstr(); r.cstr()
        fields = []
        for _ in range(r.u16()):
            fields.append((r.cstr(), _cql_type(r)))
        return (tid, fields)
    if tid == 0x31:  # tuple
        return (tid, [_cql_type(r) for _ in range(r.u16())])
    return (tid,)


def _cql_value(t, b):
    if b is None:
        return "null"
    tid = t[0]
    if tid in (0x01, 0x0D):  # ascii, varchar
        return b.decode()
    if tid in (0x02, 0x05, 0x09, 0x13, 0x14):  # bigint, counter, int, smallint, tinyint
        return str(int.from_bytes(b, "big", signed=True))
    if tid == 0x04:
        return "true" if b != b"\x00" else "false"
    if tid in (0x0C, 0x0F):  # uuid, timeuuid
        return str(uuid.UUID(bytes=b))
    if tid in (0x20, 0x22):
        rr = Reader(b)
        items = [_cql_value(t[1], rr.cbytes()) for _ in range(rr.i32())]
        return ("[%s]" if tid == 0x20 else "{%s}") % ", ".join(items)
    if tid == 0x21:
        rr = Reader(b)
        items = []
        for _ in range(rr.i32()):
            k = _cql_value(t[1], rr.cbytes())
            items.append("%s: %s" % (k, _cql_value(t[2], rr.cbytes())))
        return "{%s}" % ", ".join(items)
    return "0x" + b.hex()


def _cql_query(sock, stream, query):
    body = struct.pack(">i", len(query.encode())) + query.encode()
    body += struct.pack(">hB", 0x0001, 0)  # consistency ONE, no flags
    sock.sendall(_cql_frame(0x07, stream, body))
    opcode, r = _cql_read(sock)
    if opcode == 0x00:
        code = r.i32()
        print("cql error 0x%04x: %s" % (code, r.cstr()), file=sys.stderr)
        return 1
    if opcode != 0x08:
        raise ValueError("unexpected opcode %d" % opcode)
    kind = r.i32()
    if kind != 2:  # void, set_keyspace, schema_change: nothing to print
        return 0
    flags = r.i32()
    ncols = r.i32()
    if flags & 0x0002:
        r.cbytes()  # paging state
    types = []
    if not flags & 0x0004:  # no_metadata not set
        if flags & 0x0001:
            r.cstr(); r.cstr()
        for _ in range(ncols):
            if not flags & 0x0001:
                r.cstr(); r.cstr()
            r.cstr()
            types.append(_cql_type(r))
    for _ in range(r.i32()):
        print("\t".join(_cql_value(types[i] if types else (0,), r.cbytes()) for i in range(ncols)))
    return 0


def cql(addr, statements):
    host, port = _split_addr(addr, 9042)
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        body = struct.pack(">H", 1)
        for k in (b"CQL_VERSION", b"3.0.0"):
            body += struct.pack(">H", len(k)) + k
        s.sendall(_cql_frame(0x01, 0, body))
        opcode, r = _cql_read(s)
        if opcode == 0x03:  # AUTHENTICATE: SASL PLAIN, as PasswordAuthenticator expects
            user = os.environ.get("TURNPIKE_CQL_USERNAME", "")
            password = os.environ.get("TURNPIKE_CQL_PASSWORD", "")
            if not user:
                print("cql: server requires authentication (set TURNPIKE_CQL_USERNAME/PASSWORD)", file=sys.stderr)
                return 1
            token = b"\0" + user.encode() + b"\0" + password.encode()
            s.sendall(_cql_frame(0x0F, 0, struct.pack(">i", len(token)) + token))
            opcode, r = _cql_read(s)
            if opcode == 0x00:
                r.i32()
                print("cql: login as %s refused: %s" % (user, r.cstr()), file=sys.stderr)
                return 3
            if opcode != 0x10:  # AUTH_SUCCESS
                print("cql: unexpected reply 0x%02x to the login" % opcode, file=sys.stderr)
                return 2
        elif opcode == 0x00:
            r.i32()
            print("cql startup error: " + r.cstr(), file=sys.stderr)
            return 1
        rc = 0
        for i, stmt in enumerate(statements, start=1):
            rc = _cql_query(s, i, stmt)
            if rc:
                break
        return rc


def http_ok(url):
    req = urllib.request.Request(url)
    user = os.environ.get("TURNPIKE_SCHEMA_REGISTRY_USERNAME")
    if user:
        pair = f"{user}:{os.environ.get('TURNPIKE_SCHEMA_REGISTRY_PASSWORD', '')}".encode()
        req.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return 0 if resp.status == 200 else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "kafka-topics":
            return kafka_topics(args[0] if args else "127.0.0.1:9092")
        if cmd == "cql":
            if not args or " " in args[0] or ":" not in args[0]:
                args = ["127.0.0.1:9042"] + args
            if len(args) < 2:
                args = args + ["SELECT release_version FROM system.local"]
            statements = []
            for a in args[1:]:
                statements += [l for l in sys.stdin.read().splitlines() if l.strip()] if a == "-" else [a]
            return cql(args[0], statements)
        if cmd == "http-ok":
            return http_ok(args[0])
    except (OSError, ValueError, ConnectionError) as e:
        print("%s: %s" % (cmd, e), file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
