#!/usr/bin/env python3
"""Integration tests of `cairn serve`: the real server on a loopback port.

Run one case:  test_server.py CAIRN_BINARY CASE
Every case starts its own server (fresh data directory, free port) and
stops it.  Only the Python standard library is used, plus the `zstd` and
`promtool` commands where a case needs them.
"""
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

CAIRN = None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, *args, config=None, data=None, env=None, port=None):
        self.dir = tempfile.mkdtemp(prefix="cairn-it-")
        self.data = data or os.path.join(self.dir, "data")
        self.port = port or free_port()
        self.args = list(args)
        self.config = config
        self.env = env
        self.proc = None
        self.start()

    def start(self):
        cmd = [CAIRN, "serve", "--listen", f"127.0.0.1:{self.port}",
               "--data", self.data] + self.args
        if self.config is not None:
            path = os.path.join(self.dir, "cairn.conf")
            with open(path, "w") as f:
                f.write(self.config)
            cmd += ["--config", path]
        env = dict(os.environ)
        env.update(self.env or {})
        self.out = open(os.path.join(self.dir, "serve.log"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.out,
                                     env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited: " + self.log())
            try:
                st, _, _ = self.req("GET", "/readyz")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("server not ready: " + self.log())

    def log(self):
        self.out.flush()
        with open(self.out.name) as f:
            return f.read()

    def req(self, method, path, body=None, headers=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hdrs, data

    def json(self, method, path, body=None, headers=None, expect=None):
        st, h, data = self.req(method, path, body, headers)
        if expect is not None and st != expect:
            raise AssertionError(f"{method} {path}: {st} {data!r}, wanted "
                                 f"{expect}")
        try:
            return st, h, json.loads(data) if data else None
        except ValueError:
            return st, h, data

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server did not stop on " + str(sig))
        return self.proc.returncode

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def error_code(data):
    return data["error"]["code"] if isinstance(data, dict) else None


# ---- cases ------------------------------------------------------------------

def case_health_and_ready():
    s = Server()
    try:
        st, h, d = s.json("GET", "/healthz", expect=200)
        check(d == {"status": "ok"})
        st, h, d = s.json("GET", "/readyz", expect=200)
        check(d["ready"] is True)
    finally:
        s.close()


def case_append_and_read():
    s = Server()
    try:
        st, h, d = s.json("POST", "/v1/streams/auth:client-17/events",
                          {"type": "auth.failure", "data": {"user": "bob"}},
                          expect=201)
        check(d == {"stream": "auth:client-17", "first_seq": 1,
                    "last_seq": 1, "version": 1}, d)
        # an array is one batch: consecutive seqs and versions
        st, h, d = s.json("POST", "/v1/streams/auth:client-17/events",
                          [{"type": "auth.success", "data": 1,
                            "time": "2026-11-22T10:00:00.123456789Z",
                            "correlation_id": "c-1"},
                           {"type": "auth.failure", "data_base64": "AAEC"}],
                          expect=201)
        check(d["first_seq"] == 2 and d["last_seq"] == 3 and d["version"] == 3)
        # NDJSON
        nd = b'{"type":"tool.call","data":{"n":1}}\n{"type":"tool.call"}\n'
        st, h, d = s.json("POST", "/v1/streams/tools%2Fcall:client-17/events",
                          nd, {"Content-Type": "application/x-ndjson"},
                          expect=201)
        check(d["stream"] == "tools/call:client-17" and d["version"] == 2)
        # the binary batch
        ev = struct.pack("<BBBBI", 4, 0, 1, 0, 7) + b"ping" + b'{"a":1}'
        body = b"CRNB" + struct.pack("<HHI", 1, 0, 1) + ev
        st, h, d = s.json("POST", "/v1/streams/bin/events", body,
                          {"Content-Type": "application/vnd.cairn.batch"},
                          expect=201)
        check(d["first_seq"] == 6)
        # read all as NDJSON
        st, h, data = s.req("GET", "/v1/events?from_seq=1")
        check(st == 200 and h["content-type"] == "application/x-ndjson")
        lines = [json.loads(x) for x in data.splitlines()]
        check([e["seq"] for e in lines] == [1, 2, 3, 4, 5, 6])
        check(lines[0]["data"] == {"user": "bob"})
        check(lines[1]["time"] == "2026-11-22T10:00:00.123456789Z")
        check(lines[1]["correlation_id"] == "c-1")
        check(lines[2]["data_base64"] == "AAEC")
        check(lines[4]["data"] is None)
        check(lines[5]["data"] == {"a": 1} and lines[5]["type"] == "ping")
        check(h["cairn-next-seq"] == "7")
        # JSON array, limit and paging
        st, h, d = s.json("GET", "/v1/events?from_seq=2&limit=2",
                          headers={"Accept": "application/json"}, expect=200)
        check([e["seq"] for e in d] == [2, 3] and h["cairn-next-seq"] == "4")
        # filters
        st, h, data = s.req("GET", "/v1/events?prefix=auth:")
        check([json.loads(x)["seq"] for x in data.splitlines()] == [1, 2, 3])
        st, h, data = s.req("GET", "/v1/events?stream=tools%2Fcall%3Aclient-17")
        check(len(data.splitlines()) == 2)
        st, h, data = s.req("GET", "/v1/events?type=auth.failure,ping")
        check([json.loads(x)["seq"] for x in data.splitlines()] == [1, 3, 6])
        st, h, data = s.req("GET",
                            "/v1/events?from_time=2026-11-22T10:00:00Z"
                            "&stream=auth:client-17")
        check([json.loads(x)["seq"] for x in data.splitlines()] == [1, 2, 3])
        # one stream's events by version
        st, h, data = s.req("GET",
                            "/v1/streams/auth:client-17/events?from_version=2")
        check([json.loads(x)["version"] for x in data.splitlines()] == [2, 3])
        # stream state
        st, h, d = s.json("GET", "/v1/streams/auth:client-17", expect=200)
        check(d["version"] == 3 and d["event_count"] == 3 and
              d["first_seq"] == 1 and d["last_seq"] == 3 and
              d["breaker"] == "closed" and d["throttled"] is False, d)
        st, h, d = s.json("GET", "/v1/streams/nobody", expect=404)
        check(error_code(d) == "not_found")
        # derived state
        st, h, d = s.json("GET", "/v1/streams/auth:client-17/state"
                                 "?projection=counts", expect=200)
        check(d["state"]["total"] == 3)
        check(d["state"]["by_type"] == {"auth.failure": 2, "auth.success": 1})
        st, h, d = s.json("GET", "/v1/streams/auth:client-17/state"
                                 "?projection=counts&at_seq=1", expect=200)
        check(d["state"]["total"] == 1)
        st, h, d = s.json("GET", "/v1/streams/auth:client-17/state"
                                 "?projection=nope", expect=404)
    finally:
        s.close()


def case_json_event_reader():
    """The tree-less event reader: escapes, surrogates, whitespace inside
    data (compacted), nested values, null, numbers."""
    s = Server()
    try:
        body = ('[ {"type" : "caf\\u00e9.\\ud83d\\ude00", "id": "a\\"b",'
                '\n  "data" : { "text" : "line\\nbreak \\"q\\" \\\\",\n'
                '  "list" : [ 1 , -2.5e3 , true , false , null , [ ] , { } ] } },'
                ' {"type":"t2","data":null}, {"type":"t3","data":"  spaced  "} ]')
        st, h, d = s.json("POST", "/v1/streams/j/events", body, expect=201)
        check(d["version"] == 3)
        st, h, data = s.req("GET", "/v1/streams/j/events")
        lines = data.splitlines()
        check(len(lines) == 3, data)  # no raw newline leaked into a line
        e = [json.loads(x) for x in lines]
        check(e[0]["type"] == "caf\u00e9.\U0001f600", e[0]["type"])
        check(e[0]["id"] == 'a"b')
        check(e[0]["data"] == {"text": 'line\nbreak "q" \\',
                               "list": [1, -2500.0, True, False, None, [],
                                        {}]}, e[0]["data"])
        check(e[1]["data"] is None and e[2]["data"] == "  spaced  ")
        # the stored payload is compact JSON
        st, h, d = s.json("GET", "/v1/streams/j/state?projection=last",
                          expect=200)
        for bad in ('{"type":"t","data":{"a":1}} x', '{"type":"t","data":1,}',
                    '[{"type":"t"} {"type":"u"}]', '{"type":1}',
                    '{"type":"t","id":["x"]}', '{"type":"\\ud800"}'):
            st, h, d = s.json("POST", "/v1/streams/j/events", bad)
            check(st in (400, 422), (bad, st, d))
        st, h, d = s.json("GET", "/v1/streams/j", expect=200)
        check(d["version"] == 3)
    finally:
        s.close()


def case_bench_json_contract():
    """`cairn bench --json` writes the brief's document."""
    d = tempfile.mkdtemp(prefix="cairn-it-")
    try:
        out = os.path.join(d, "bench.json")
        r = subprocess.run([CAIRN, "bench", "--quick", "--only", "fsm",
                            "--json", out], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        check(r.returncode == 0, r.stderr)
        doc = json.load(open(out))
        check(set(doc) == {"machine", "results"}, doc.keys())
        check(doc["machine"]["cores"] >= 1)
        names = [x["name"] for x in doc["results"]]
        check("fsm.transition" in names and "cell.price.update" in names,
              names)
        for x in doc["results"]:
            check({"name", "unit", "value", "baseline", "ratio"} <= set(x), x)
            if x["baseline"] is not None:
                check(x["ratio"] > 0, x)
        check(b"fsm.transition" in r.stdout)  # the results table
        r = subprocess.run([CAIRN, "bench", "--only", "nope"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(r.returncode == 2, r)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_server_limits():
    """client_rate, header size, slow clients, connection count."""
    s = Server("--server.client_rate", "2", "--server.client_burst", "3",
               "--server.max_header_bytes", "1024",
               "--server.request_timeout_secs", "1",
               "--server.max_connections", "4")
    try:
        # per-client GCRA: 3 at once, then 429 with Retry-After
        codes = [s.req("GET", "/v1/events")[0] for _ in range(6)]
        check(codes[:3] == [200, 200, 200] and 429 in codes[3:], codes)
        st, h, d = s.json("GET", "/v1/events")
        if st == 429:
            check("retry-after" in h and "cairn-retry-after-ns" in h, h)
        time.sleep(2)  # the bucket refills at 2/s
        # a header block over max_header_bytes is refused
        st, h, d = s.req("GET", "/healthz", headers={"X-Big": "x" * 4000})
        check(st in (413, 431), st)
        time.sleep(2)
        # a client that stops sending is cut off after request_timeout_secs
        slow = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.time()
        check(slow.recv(100) == b"", "slow client not disconnected")
        check(time.time() - t0 < 5, time.time() - t0)
        slow.close()
        # max_connections: idle connections beyond the limit are refused
        time.sleep(2)
        conns = [socket.create_connection(("127.0.0.1", s.port), timeout=5)
                 for _ in range(4)]
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = extra.recv(100)
        except OSError:
            got = b""
        check(got == b"", got)
        for c in conns + [extra]:
            c.close()
    finally:
        s.close()


def case_sighup_reloads_tokens_and_patterns():
    d = tempfile.mkdtemp(prefix="cairn-it-")
    pat = os.path.join(d, "patterns")
    with open(pat, "w") as f:
        f.write("test.forbidden reject high * literal forbidden-word\n")
    conf = ("[guard]\npatterns = " + pat + "\n" + TOKENS)
    s = Server(config=conf)
    try:
        p = "/v1/streams/h/events"
        w = bearer("w" * 24)
        s.json("POST", p, {"type": "t", "data": "forbidden-word"}, w,
               expect=422)
        s.json("POST", p, {"type": "t", "data": "other-word"}, w, expect=201)
        s.json("POST", p, {"type": "t"}, bearer("n" * 24), expect=401)
        # new pattern set and a new token, then SIGHUP
        with open(pat, "w") as f:
            f.write("test.other reject high * literal other-word\n")
        with open(os.path.join(s.dir, "cairn.conf"), "a") as f:
            f.write("token = newbie:append:" + "n" * 24 + "\n")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and "reloaded" not in s.log():
            time.sleep(0.05)
        check("reloaded" in s.log(), s.log())
        s.json("POST", p, {"type": "t", "data": "forbidden-word"}, w,
               expect=201)
        s.json("POST", p, {"type": "t", "data": "other-word"}, w, expect=422)
        s.json("POST", p, {"type": "t"}, bearer("n" * 24), expect=201)
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def case_expected_version():
    s = Server()
    try:
        p = "/v1/streams/orders/events"
        ev = {"type": "placed", "data": {}}
        s.json("POST", p, ev, {"Cairn-Expected-Version": "exists"},
               expect=409)
        s.json("POST", p, ev, {"Cairn-Expected-Version": "no-stream"},
               expect=201)
        st, h, d = s.json("POST", p, ev, {"Cairn-Expected-Version": "0"},
                          expect=409)
        check(error_code(d) == "version_conflict")
        check("version 1" in d["error"]["message"], d)
        s.json("POST", p, ev, {"Cairn-Expected-Version": "1"}, expect=201)
        s.json("POST", p, ev, {"Cairn-Expected-Version": "any"}, expect=201)
        s.json("POST", p, ev, {"Cairn-Expected-Version": "soon"}, expect=400)
        s.json("POST", p, ev, {"Cairn-Durability": "eventually"}, expect=400)
        for d in ("memory", "os", "sync"):
            s.json("POST", p, ev, {"Cairn-Durability": d}, expect=201)
        # idempotency: the same id returns the original answer
        st, h, a = s.json("POST", p, {"type": "t", "id": "req-1"}, expect=201)
        st, h, b = s.json("POST", p, {"type": "t", "id": "req-1"}, expect=201)
        check(b.get("duplicate") is True and b["first_seq"] == a["first_seq"])
    finally:
        s.close()


def case_status_codes():
    s = Server("--server.max_body_bytes", "100000",
               "--event_processor.max_event_bytes", "2000")
    try:
        p = "/v1/streams/s/events"
        s.json("POST", p, b"{not json", expect=400)
        s.json("POST", p, {"data": 1}, expect=400)           # no type
        s.json("POST", p, {"type": "t", "bogus": 1}, expect=400)
        s.json("POST", p, {"type": "t", "outcome": "maybe"}, expect=400)
        s.json("POST", p, [], expect=400)                    # empty batch
        s.json("POST", "/v1/streams/a%0Ab/events", {"type": "t"}, expect=400)
        s.json("POST", "/v1/streams/%24audit/events", {"type": "t"},
               expect=400)
        s.json("POST", p, {"type": "t", "data": "x" * 3000}, expect=413)
        s.json("POST", p, b"x" * 200000, expect=413)
        s.json("POST", p, b"{}", {"Content-Type": "text/plain"}, expect=415)
        s.json("POST", p, b"{}", {"Content-Encoding": "br"}, expect=415)
        s.json("POST", p, b"{}", {"Content-Encoding": "snappy"}, expect=415)
        s.json("POST", p, b"[" * 100 + b"]" * 100, expect=422)   # depth
        s.json("POST", p, b'{"type":"t","data":"\xff"}', expect=422)
        st, h, d = s.json("POST", p, {"type": "t",
                                      "data": {"path": "../../etc/passwd"}},
                          expect=422)
        check(error_code(d) == "guard_pattern", d)
        s.json("POST", p, {"type": "t", "data": "abc\u202edef"}, expect=422)
        s.json("GET", "/v1/nothing", expect=404)
        s.json("DELETE", "/v1/events", expect=405)
        s.json("GET", "/v1/events?from_seq=abc", expect=400)
        st, h, d = s.json("GET", "/v1/events?limit=0", expect=400)
        check("limit" in d["error"]["message"], d)
        s.json("GET", "/v1/events?stream=a&prefix=b", expect=400)
        s.json("GET", "/v1/subscribe?stream=a&prefix=b", expect=400)
        s.json("GET", "/v1/subscribe", headers={"Last-Event-ID": "x"},
               expect=400)
        # nothing was stored by any of them, but the guard rejections
        # are in the audit trail
        st, h, data = s.req("GET", "/v1/events")
        evs = [json.loads(x) for x in data.splitlines()]
        check(all(e["stream"] == "$audit" for e in evs), evs)
        check(any(e["type"] == "guard.rejected" for e in evs), evs)
    finally:
        s.close()


def case_compressed_bodies_and_bombs():
    s = Server()
    try:
        p = "/v1/streams/z/events"
        body = json.dumps([{"type": "t", "data": {"i": i}}
                           for i in range(50)]).encode()
        st, h, d = s.json("POST", p, gzip.compress(body),
                          {"Content-Encoding": "gzip"}, expect=201)
        check(d["version"] == 50)
        z = subprocess.run(["zstd", "-q", "-c"], input=body,
                           stdout=subprocess.PIPE, check=True).stdout
        st, h, d = s.json("POST", p, z, {"Content-Encoding": "zstd"},
                          expect=201)
        check(d["version"] == 100)
        # a gzip bomb: 64 MiB of zeros compresses to ~64 KiB
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        bomb = co.compress(b"\0" * (64 << 20)) + co.flush()
        st, h, d = s.json("POST", p, bomb, {"Content-Encoding": "gzip"},
                          expect=413)
        check(error_code(d).startswith("guard_bomb"), d)
        # gzip in gzip in gzip: more layers than max_decode_layers (2)
        g3 = gzip.compress(gzip.compress(gzip.compress(body)))
        st, h, d = s.json("POST", p, g3, {"Content-Encoding": "gzip"},
                          expect=413)
        # truncated gzip
        s.json("POST", p, gzip.compress(body)[:-20],
               {"Content-Encoding": "gzip"}, expect=400)
        st, h, d = s.json("GET", "/v1/streams/z", expect=200)
        check(d["version"] == 100)
    finally:
        s.close()


TOKENS = """
[auth]
token = reader:read:rrrrrrrrrrrrrrrrrrrrrrrr
token = writer:append:wwwwwwwwwwwwwwwwwwwwwwww
token = boss:admin:aaaaaaaaaaaaaaaaaaaaaaaa
"""


def bearer(secret):
    return {"Authorization": "Bearer " + secret}


def case_auth_roles():
    s = Server(config=TOKENS)
    try:
        p = "/v1/streams/s/events"
        ev = {"type": "t"}
        s.json("GET", "/healthz", expect=200)
        s.json("GET", "/readyz", expect=200)
        s.json("POST", p, ev, expect=401)
        s.json("POST", p, ev, bearer("x" * 24), expect=401)
        s.json("POST", p, ev, bearer("r" * 24), expect=403)
        s.json("POST", p, ev, bearer("w" * 24), expect=201)
        s.json("POST", p, ev, bearer("a" * 24), expect=201)
        s.json("GET", "/v1/events", expect=401)
        s.json("GET", "/v1/events", headers=bearer("r" * 24), expect=200)
        s.json("GET", "/metrics", expect=401)
        s.json("GET", "/metrics", headers=bearer("r" * 24), expect=200)
        s.json("GET", "/metrics.json", headers=bearer("r" * 24), expect=200)
        br = "/v1/streams/s/breaker"
        s.json("PUT", br, {"state": "open"}, bearer("w" * 24), expect=403)
        s.json("PUT", br, {"state": "open"}, bearer("a" * 24), expect=200)
    finally:
        s.close()


def case_non_loopback_needs_tokens():
    port = free_port()
    r = subprocess.run([CAIRN, "serve", "--listen", f"0.0.0.0:{port}",
                        "--data", tempfile.mkdtemp(prefix="cairn-it-")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    check(r.returncode == 1, r)
    check(b"--insecure" in r.stderr, r.stderr)
    s = Server("--insecure", port=port)
    s.close()


def case_breaker_and_throttle():
    s = Server("--throttle.stream_rate", "1", "--throttle.stream_burst", "2")
    try:
        p = "/v1/streams/api:c1/events"
        s.json("POST", p, {"type": "t"}, expect=201)
        s.json("POST", p, {"type": "t"}, expect=201)
        st, h, d = s.json("POST", p, {"type": "t"}, expect=429)
        check(int(h["retry-after"]) >= 1 and "cairn-retry-after-ns" in h, h)
        check(error_code(d) == "throttled")
        st, h, d = s.json("GET", "/v1/streams/api:c1", expect=200)
        check(d["throttled"] is True and d["version"] == 2, d)
    finally:
        s.close()
    s = Server()
    try:
        q = "/v1/streams/api:c2/events"
        s.json("PUT", "/v1/streams/api:c2/breaker", {"state": "open"},
               expect=200)
        st, h, d = s.json("POST", q, {"type": "t"}, expect=503)
        check("retry-after" in h and error_code(d) == "breaker_open", d)
        st, h, d = s.json("GET", "/v1/streams/api:c2")
        s.json("PUT", "/v1/streams/api:c2/breaker", {"state": "closed"},
               expect=200)
        s.json("POST", q, {"type": "t"}, expect=201)
        s.json("PUT", "/v1/streams/api:c2/breaker", {"state": "ajar"},
               expect=400)
        # failures reported with appends open the breaker (threshold 5)
        r = "/v1/streams/api:c3/events"
        for i in range(5):
            s.json("POST", r, [{"type": "req", "outcome": "failure"}],
                   expect=201)
        st, h, d = s.json("POST", r, {"type": "req"}, expect=503)
        st, h, d = s.json("GET", "/v1/streams/api:c3", expect=200)
        check(d["breaker"] == "open" and d["failures"] == 5, d)
        # and the audit trail says so
        st, h, data = s.req("GET", "/v1/events?stream=%24audit")
        types = [json.loads(x)["type"] for x in data.splitlines()]
        check("breaker.opened" in types, types)
        st, h, data = s.req("GET", "/metrics")
        # opened twice (by the admin for api:c2, by failures for api:c3),
        # closed once (by the admin)
        check(b'cairn_breaker_transitions_total{to="open"} 2' in data and
              b'cairn_breaker_transitions_total{to="closed"} 1' in data,
              [l for l in data.splitlines() if b"breaker" in l])
    finally:
        s.close()


FSM = """
[fsm.position]
streams = position:*
initial = CREATED
transition = CREATED + POSITION_OPENED -> MONITORING
transition = MONITORING + EXIT_CONDITION_MET -> EXIT_PENDING
"""


def case_fsm_bound_streams():
    keep = tempfile.mkdtemp(prefix="cairn-it-data-")
    s = Server(config=FSM, data=os.path.join(keep, "data"))
    try:
        p = "/v1/streams/position:1/events"
        st, h, d = s.json("POST", p, {"type": "EXIT_CONDITION_MET"},
                          expect=409)
        check(error_code(d) == "fsm_invalid_transition", d)
        s.json("POST", p, {"type": "POSITION_OPENED"}, expect=201)
        s.json("POST", p, {"type": "price.tick", "data": 3.5}, expect=201)
        st, h, d = s.json("GET", "/v1/streams/position:1", expect=200)
        check(d["fsm_state"] == "MONITORING" and d["version"] == 2, d)
        s.json("POST", p, {"type": "POSITION_OPENED"}, expect=409)
        s.json("POST", p, {"type": "EXIT_CONDITION_MET"}, expect=201)
        st, h, d = s.json("GET", "/v1/streams/position:1", expect=200)
        check(d["fsm_state"] == "EXIT_PENDING", d)
        # other streams are not bound
        s.json("POST", "/v1/streams/other/events",
               {"type": "EXIT_CONDITION_MET"}, expect=201)
    finally:
        s.close()
    # the state survives a restart (recovery replays the machine)
    s = Server(config=FSM, data=s.data)
    try:
        st, h, d = s.json("GET", "/v1/streams/position:1", expect=200)
        check(d["fsm_state"] == "EXIT_PENDING", d)
    finally:
        s.close()
        shutil.rmtree(keep, ignore_errors=True)


def sse_read(port, path, n, headers=None, timeout=10):
    """Read n events from an SSE stream: [(id, type, data)]."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    h = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{h}\r\n".encode())
    f = sock.makefile("rb")
    status = f.readline()
    check(b" 200 " in status, status)
    while f.readline() not in (b"\r\n", b""):
        pass
    events, cur, buf = [], {}, b""
    # chunked transfer: read chunk by chunk
    while len(events) < n:
        size = int(f.readline().strip(), 16)
        if size == 0:
            break
        buf += f.read(size)
        f.readline()
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            cur = {}
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    continue
                k, _, v = line.partition(b": ")
                cur[k.decode()] = v.decode()
            if "id" in cur:
                events.append((int(cur["id"]), cur.get("event"),
                               json.loads(cur["data"])))
    sock.close()
    return events[:n]  # a chunk may carry more than were asked for


def case_sse_catch_up_and_resume():
    s = Server("--event_processor.buffer_size_mb", "1",
               "--storage.segment_bytes", "65536")
    try:
        for i in range(30):
            s.json("POST", "/v1/streams/feed/events",
                   [{"type": "tick", "data": {"i": i * 10 + k}}
                    for k in range(10)], expect=201)
        got = sse_read(s.port, "/v1/subscribe?from_seq=1&stream=feed", 120)
        check([e[0] for e in got] == list(range(1, 121)))
        check(got[0][1] == "tick" and got[0][2]["data"] == {"i": 0})
        # resume where we stopped, while new events arrive
        def more():
            for i in range(30, 40):
                s.json("POST", "/v1/streams/feed/events",
                       [{"type": "tick", "data": {"i": i}}], expect=201)
        t = threading.Thread(target=more)
        t.start()
        rest = sse_read(s.port, "/v1/subscribe?stream=feed", 190,
                        headers={"Last-Event-ID": "120"})
        t.join()
        check([e[0] for e in rest] == list(range(121, 311)))
        s.json("GET", "/v1/subscribe?from_time=yesterday", expect=400)
    finally:
        s.close()


def case_racing_no_stream():
    s = Server()
    try:
        results = []
        lock = threading.Lock()
        go = threading.Event()

        def racer(i):
            go.wait()
            st, h, d = s.req("POST", "/v1/streams/race/events",
                             json.dumps({"type": "claim", "data": i}),
                             {"Content-Type": "application/json",
                              "Cairn-Expected-Version": "no-stream"})
            with lock:
                results.append(st)

        ts = [threading.Thread(target=racer, args=(i,)) for i in range(20)]
        for t in ts:
            t.start()
        go.set()
        for t in ts:
            t.join()
        check(results.count(201) == 1 and results.count(409) == 19, results)
    finally:
        s.close()


def case_kill9_under_load():
    s = Server()
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w):
        i = 0
        while not stop.is_set():
            body = json.dumps([{"type": "load", "data": {"w": w, "i": i,
                                                         "k": k}}
                               for k in range(3)])
            try:
                st, h, d = s.req("POST", f"/v1/streams/load-{w}/events", body,
                                 {"Content-Type": "application/json",
                                  "Cairn-Durability": "sync"}, timeout=5)
            except OSError:
                return
            if st == 201:
                d = json.loads(d)
                with lock:
                    for k in range(3):
                        acked[d["first_seq"] + k] = {"w": w, "i": i, "k": k}
            i += 1

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    time.sleep(1.5)
    s.proc.kill()  # SIGKILL under load
    s.proc.wait()
    stop.set()
    for t in ts:
        t.join()
    check(len(acked) > 50, len(acked))
    s.start()
    try:
        st, h, data = s.req("GET", "/v1/events?from_seq=1&limit=10000")
        got = {}
        seqs = []
        while True:
            for line in data.splitlines():
                e = json.loads(line)
                got[e["seq"]] = e["data"]
                seqs.append(e["seq"])
            nxt = h["cairn-next-seq"]
            st, h, data = s.req("GET", f"/v1/events?from_seq={nxt}"
                                       "&limit=10000")
            if not data:
                break
        check(seqs == list(range(1, len(seqs) + 1)), "gap after recovery")
        for seq, d in acked.items():
            check(got.get(seq) == d, f"acknowledged seq {seq} lost or changed")
        check(s.stop() == 0)
        r = subprocess.run([CAIRN, "verify", s.data], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        check(r.returncode == 0, r.stderr)
    finally:
        s.close()


def case_metrics_promtool():
    s = Server()
    try:
        s.json("POST", "/v1/streams/m/events", {"type": "t"}, expect=201)
        st, h, data = s.req("GET", "/metrics")
        check(st == 200 and h["content-type"].startswith("text/plain"))
        check(b"cairn_appends_total" in data)
        # guard rejections are counted by cause
        s.json("POST", "/v1/streams/m/events",
               {"type": "t", "data": "../../etc/passwd"}, expect=422)
        st, h, data = s.req("GET", "/metrics")
        check(b'cairn_guard_rejections_total{cause="pattern"} 1' in data,
              [l for l in data.splitlines() if b"guard" in l])
        r = subprocess.run(["promtool", "check", "metrics"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(r.returncode == 0, r.stdout)
        st, h, data = s.req("GET", "/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})
        check(data.rstrip().endswith(b"# EOF"), data[-50:])
        st, h, d = s.json("GET", "/metrics.json", expect=200)
        check(isinstance(d, (dict, list)))
    finally:
        s.close()


def case_sigterm_drains_and_syncs():
    s = Server("--storage.durability", "memory")
    try:
        for i in range(100):
            s.json("POST", "/v1/streams/s/events", {"type": "t", "data": i},
                   expect=201)
        check(s.stop(signal.SIGTERM) == 0, s.log())
        s.start()
        st, h, d = s.json("GET", "/v1/streams/s", expect=200)
        check(d["version"] == 100, d)
        check(s.stop(signal.SIGINT) == 0)
    finally:
        s.close()


def case_cli_against_server():
    s = Server()
    url = f"http://127.0.0.1:{s.port}"
    try:
        r = subprocess.run([CAIRN, "append", "--url", url, "--stream",
                            "cli:s", "--type", "hello", "--data",
                            '{"x":1}'], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        check(r.returncode == 0, r.stderr)
        check(json.loads(r.stdout)["version"] == 1)
        r = subprocess.run([CAIRN, "append", "--url", url, "--stream",
                            "cli:s"], input=b'{"type":"a"}\n{"type":"b"}\n',
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(r.returncode == 0, r.stderr)
        r = subprocess.run([CAIRN, "read", "--url", url, "--stream", "cli:s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(r.returncode == 0, r.stderr)
        check([json.loads(x)["type"] for x in r.stdout.splitlines()] ==
              ["hello", "a", "b"], r.stdout)
        r = subprocess.run([CAIRN, "state", "--url", url, "cli:s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(r.returncode == 0 and json.loads(r.stdout)["version"] == 3)
        r = subprocess.run([CAIRN, "append", "--url", url, "--stream",
                            "cli:s", "--type", "x", "--expected-version",
                            "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        check(r.returncode == 1 and b"version_conflict" in r.stderr, r)
        r = subprocess.run([CAIRN, "state", "--url", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(r.returncode == 2, r)
    finally:
        s.close()


def main():
    global CAIRN
    if len(sys.argv) != 3:
        print("usage: test_server.py CAIRN_BINARY CASE", file=sys.stderr)
        return 2
    CAIRN = os.path.abspath(sys.argv[1])
    fn = globals().get("case_" + sys.argv[2])
    if not fn:
        print("no case " + sys.argv[2], file=sys.stderr)
        return 2
    fn()
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
