/*
 * bench_http.c — the HTTP server under load (issue 8, item 9).  `cairn
 * serve` runs as a child process of `cairn bench` (/proc/self/exe) on a
 * free loopback port with a fresh data directory:
 *
 *   http.ingest.single     events/s, one 64 B event per POST, `sync`,
 *                          keep-alive, wrk -t2 -c32 (32 connections, one
 *                          request in flight each) over 64 streams;
 *                          baseline peer.redis.xadd.single
 *   http.ingest.batch100   events/s, 100 such events per POST (a JSON
 *                          array), `sync`, the same wrk setup;
 *                          baseline peer.redis.xadd.pipelined
 *   http.sse.fanout        events/s delivered to 8 SSE clients (each a
 *                          thread reading its own socket and counting
 *                          `id:` lines) while 16 keep-alive producers POST
 *                          batches of 100, `sync`; the sum over the 8
 *                          clients, from the first append until every
 *                          client has seen the last event; baseline
 *                          http.sse.produced.x8 (8 x the producers' rate:
 *                          what perfect fan-out would deliver)
 *
 * Peers, in the same run on the same disk: redis-server (appendonly yes,
 * appendfsync always) on another free loopback port, XADD of a 64 B field
 * by redis-benchmark from 32 clients:
 *
 *   peer.redis.xadd.pipelined   pipeline 100 (-P 100): 100 commands per
 *                               round trip, as batch100 sends 100 events
 *   peer.redis.xadd.single      no pipelining (-P 1): one command in flight
 *                               per connection, as http.ingest.single has
 *                               one request in flight per connection — the
 *                               like-for-like baseline of that result
 *
 * Every figure is parsed from what the tools print (wrk's Requests/sec
 * times events per request, redis-benchmark's CSV rps) or counted by the
 * clients here.  A run whose responses are not all 2xx, or whose
 * acknowledged events are not all in the log afterwards (checked by the
 * seq a probe append gets before and after), is reported as skipped with
 * the reason rather than as a number.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SSE_CLIENTS 8
#define SSE_PRODUCERS 16
#define WRK_THREADS 2
#define WRK_CONNECTIONS 32
#define REDIS_CLIENTS 32
#define READY_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 15000

/* The 64 B payload: a JSON object for cairn, the same bytes as the Redis
 * field value. */
#define EVENT_DATA "{\"v\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123\"}"
#define EVENT_JSON "{\"type\":\"bench.event\",\"data\":" EVENT_DATA "}"

typedef struct outcome {
    double value; /* > 0 when measured */
    char why[256];
} outcome_t;

/* ---- processes and files ---------------------------------------------------- */

static void rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cairn: bench: cannot remove %s\n", dir);
}

static int make_root(char *buf, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, len, "%s/cairn-bench-http-XXXXXX", tmp ? tmp : "/tmp");
    return mkdtemp(buf) ? 0 : -errno;
}

static int tool_exists(const char *name)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* A loopback port nobody listens on now (the kernel's choice). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* fork + exec argv with stdout and stderr to log_path; the child gets
 * SIGTERM if this process dies, so no server outlives an interrupted
 * bench.  clean_env drops CAIRN_* variables, so the server measured runs
 * the documented defaults whatever the caller's environment configures
 * (tokens, durability, limits).  Called with no other thread running. */
static pid_t spawn(char *const argv[], const char *log_path, int clean_env)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    int out = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
    }
    if (in >= 0)
        dup2(in, 0);
    for (char **e = environ; clean_env && *e;) {
        if (!strncmp(*e, "CAIRN_", 6)) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
            unsetenv(name);
            e = environ; /* unsetenv reshuffled it */
        } else {
            e++;
        }
    }
    execvp(argv[0], argv);
    _exit(127);
}

static int exited(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == pid;
}

/* SIGTERM, then SIGKILL if it has not exited after timeout_ms. */
static void stop_child(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (exited(pid))
            return;
        usleep(10000);
    }
    fprintf(stderr, "cairn: bench: pid %d ignored SIGTERM for %d ms: "
                    "killing it\n",
            (int)pid, timeout_ms);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* The last non-empty line of a file (a dead server's last words). */
static void last_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[256];
    snprintf(out, cap, "no output");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0])
            snprintf(out, cap, "%.150s", line);
    }
    if (f)
        fclose(f);
}

/* ---- a minimal HTTP/1.1 client -------------------------------------------- */

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void set_recv_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One keep-alive connection and what it has received but not consumed. */
typedef struct conn {
    int fd;
    size_t len;
    char buf[16384];
} conn_t;

/*
 * Send one request and read its response.  Returns the status code, or -1
 * when the connection failed or the response does not fit the buffer.
 * The body (NUL-terminated, truncated to cap - 1) goes to body when given.
 * A response without Content-Length is read to the end of the connection.
 */
static int http_exchange(conn_t *c, const char *req, size_t req_len,
                         char *body, size_t cap)
{
    if (send_all(c->fd, req, req_len) < 0)
        return -1;
    char *end = NULL;
    size_t content_len = 0;
    int to_close = 0;
    for (;;) {
        c->buf[c->len] = 0;
        if (!end && (end = strstr(c->buf, "\r\n\r\n"))) {
            *end = 0;
            const char *cl = strcasestr(c->buf, "\r\ncontent-length:");
            if (cl)
                content_len = strtoull(cl + 17, NULL, 10);
            else
                to_close = 1;
            *end = '\r';
        }
        if (end) {
            size_t head = (size_t)(end - c->buf) + 4;
            if (!to_close && c->len >= head + content_len)
                break;
        }
        if (c->len + 1 >= sizeof c->buf)
            return -1;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len,
                         0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            if (end && to_close) {
                content_len = c->len - ((size_t)(end - c->buf) + 4);
                break;
            }
            return -1;
        }
        c->len += (size_t)r;
    }
    int status = -1;
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    size_t head = (size_t)(end - c->buf) + 4;
    if (body && cap) {
        size_t n = content_len < cap - 1 ? content_len : cap - 1;
        memcpy(body, c->buf + head, n);
        body[n] = 0;
    }
    c->len -= head + content_len;
    memmove(c->buf, c->buf + head + content_len, c->len);
    return status;
}

/* One request on a fresh connection (Connection: close). */
static int http_once(int port, const char *method, const char *path,
                     const char *body, char *out, size_t cap)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->fd = tcp_connect(port);
    int status = -1;
    if (c->fd >= 0) {
        char *req = NULL;
        int n = asprintf(&req,
                         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Connection: close\r\n"
                         "Content-Type: application/json\r\n"
                         "Cairn-Durability: sync\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         method, path, body ? strlen(body) : 0,
                         body ? body : "");
        set_recv_timeout(c->fd, 5000);
        if (n > 0)
            status = http_exchange(c, req, (size_t)n, out, cap);
        free(req);
        close(c->fd);
    }
    free(c);
    return status;
}

static int json_u64(const char *json, const char *key, uint64_t *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return -1;
    *out = strtoull(p + strlen(pat), NULL, 10);
    return 0;
}

/* The seq the next append gets: append one probe event and return its
 * seq + 1 (0 on failure).  Counting the seqs between two probes tells how
 * many events the server stored in between. */
static uint64_t next_seq(int port)
{
    char body[512];
    uint64_t seq;
    int st = http_once(port, "POST", "/v1/streams/bench-probe/events",
                       "{\"type\":\"bench.probe\",\"data\":{}}", body,
                       sizeof body);
    if (st != 201 || json_u64(body, "first_seq", &seq) < 0)
        return 0;
    return seq + 1;
}

/* ---- cairn serve as a child process ----------------------------------------- */

typedef struct server {
    pid_t pid;
    int port;
    char log_path[600];
} server_t;

static int server_start(server_t *s, const char *root, char *why, size_t cap)
{
    char data[600], listen_at[64], exe[] = "/proc/self/exe";
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", root);
    s->port = free_port();
    if (s->port < 0) {
        snprintf(why, cap, "no free loopback port: %s", strerror(errno));
        return -1;
    }
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%d", s->port);
    char *argv[] = {exe,        "serve",    "--listen",
                    listen_at,  "--data",   data,
                    "--server.max_connections", "256",
                    NULL};
    s->pid = spawn(argv, s->log_path, 1);
    if (s->pid < 0) {
        snprintf(why, cap, "fork: %s", strerror(errno));
        return -1;
    }
    char body[256];
    for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 50) {
        if (exited(s->pid)) {
            char last[200];
            last_line(s->log_path, last, sizeof last);
            snprintf(why, cap, "cairn serve exited before ready: %s", last);
            s->pid = 0;
            return -1;
        }
        if (http_once(s->port, "GET", "/readyz", NULL, body, sizeof body) ==
            200)
            return 0;
        usleep(50000);
    }
    snprintf(why, cap, "cairn serve not ready after %d s (GET /readyz)",
             READY_TIMEOUT_MS / 1000);
    stop_child(s->pid, STOP_TIMEOUT_MS);
    s->pid = 0;
    return -1;
}

/* ---- ingest through wrk -------------------------------------------------------- */

/* The wrk script: POSTs of `batch` events (argument 1), each wrk thread
 * cycling over its own `streams` streams (argument 2), so concurrent
 * requests rarely meet on one stream.  The requests are formatted once in
 * init(); request() only picks the next. */
static const char WRK_LUA[] =
    "-- written by cairn bench (bench/bench_http.c)\n"
    "local nthreads = 0\n"
    "function setup(thread)\n"
    "  thread:set(\"tid\", nthreads)\n"
    "  nthreads = nthreads + 1\n"
    "end\n"
    "function init(args)\n"
    "  local batch = tonumber(args[1]) or 1\n"
    "  local nstreams = tonumber(args[2]) or 16\n"
    "  local ev = '" EVENT_JSON "'\n"
    "  local body = ev\n"
    "  if batch > 1 then\n"
    "    local t = {}\n"
    "    for i = 1, batch do t[i] = ev end\n"
    "    body = \"[\" .. table.concat(t, \",\") .. \"]\"\n"
    "  end\n"
    "  local h = {[\"Content-Type\"] = \"application/json\",\n"
    "             [\"Cairn-Durability\"] = \"sync\"}\n"
    "  reqs = {}\n"
    "  for i = 1, nstreams do\n"
    "    reqs[i] = wrk.format(\"POST\", \"/v1/streams/bench-\" .. tid ..\n"
    "                         \"-\" .. i .. \"/events\", h, body)\n"
    "  end\n"
    "  count = nstreams\n"
    "  n = 0\n"
    "end\n"
    "function request()\n"
    "  n = n % count + 1\n"
    "  return reqs[n]\n"
    "end\n";

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
}

/* Run wrk for `seconds` with `batch` events per request; fill o with
 * events/s, or with the reason it is not a valid measurement. */
static void ingest(const server_t *s, const char *lua, int batch, int seconds,
                   outcome_t *o)
{
    uint64_t before = next_seq(s->port);
    if (!before) {
        snprintf(o->why, sizeof o->why, "probe append before the run failed");
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "wrk -t%d -c%d -d%ds --timeout 10s -s '%s' "
             "http://127.0.0.1:%d -- %d %d 2>&1",
             WRK_THREADS, WRK_CONNECTIONS, seconds, lua, s->port, batch,
             WRK_CONNECTIONS);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(o->why, sizeof o->why, "cannot run wrk: %s", strerror(errno));
        return;
    }
    char line[512], first[160] = "", sockerr[160] = "";
    double rps = -1;
    unsigned long long requests = 0, non2xx = 0;
    while (fgets(line, sizeof line, p)) {
        char *q;
        if (!first[0]) {
            snprintf(first, sizeof first, "%.150s", line);
            trim(first);
        }
        if ((q = strstr(line, "Requests/sec:")))
            rps = atof(q + 13);
        else if ((q = strstr(line, " requests in ")))
            requests = strtoull(line, NULL, 10);
        else if ((q = strstr(line, "Non-2xx or 3xx responses:")))
            non2xx = strtoull(q + 25, NULL, 10);
        else if ((q = strstr(line, "Socket errors:"))) {
            snprintf(sockerr, sizeof sockerr, "%s", q);
            trim(sockerr);
        }
    }
    int rc = pclose(p);
    uint64_t after = next_seq(s->port);
    if (rc != 0 || rps <= 0 || !requests) {
        snprintf(o->why, sizeof o->why, "wrk failed (exit %d): %s",
                 WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, first);
        return;
    }
    if (non2xx) {
        snprintf(o->why, sizeof o->why,
                 "%llu of %llu responses were not 2xx", non2xx, requests);
        return;
    }
    if (sockerr[0]) {
        snprintf(o->why, sizeof o->why, "wrk: %s", sockerr);
        return;
    }
    /* Every acknowledged event must be in the log: the seqs between the
     * probes (minus the second probe itself) are what was stored.  wrk's
     * count leaves out requests still in flight when it stopped, which the
     * server may have stored, so stored >= acknowledged. */
    uint64_t acked = (uint64_t)requests * (uint64_t)batch;
    uint64_t stored = after > before ? after - before - 1 : 0;
    if (!after || stored < acked) {
        snprintf(o->why, sizeof o->why,
                 "server acknowledged %llu events but the log holds %llu",
                 (unsigned long long)acked, (unsigned long long)stored);
        return;
    }
    o->value = rps * batch;
}

/* ---- SSE fan-out ------------------------------------------------------------- */

typedef struct fanout {
    int port;
    uint64_t from_seq;          /* first seq the producers append */
    _Atomic uint64_t last_seq;  /* last seq appended; UINT64_MAX until known */
    _Atomic int connected;      /* clients with the response headers in */
    _Atomic int finished;       /* clients done (seen last_seq or failed) */
    _Atomic int stop;           /* give up: clients and producers return */
    uint64_t start_ns;          /* producers' first append */
    uint64_t duration_ns;       /* producers' run, at most */
    _Atomic int64_t budget;     /* events the producers may still append */
} fanout_t;

typedef struct sse_client {
    fanout_t *f;
    pthread_t th;
    uint64_t count;     /* `id:` lines */
    uint64_t seen_seq;  /* the last id */
    uint64_t lagged;    /* `event: lagged` notices */
    uint64_t done_ns;   /* when seen_seq reached last_seq; 0 = never */
    char why[128];      /* failure, or "" */
} sse_client_t;

/* Chunked transfer decoding (RFC 9112 §7.1), byte by byte, feeding the
 * event-stream line scanner. */
enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END, CH_DONE };

typedef struct sse_reader {
    int chunked;
    int state;
    uint64_t chunk_left;
    char line[48];
    size_t line_len;
} sse_reader_t;

static void sse_line(sse_client_t *c, sse_reader_t *r)
{
    r->line[r->line_len] = 0;
    if (r->line_len > 4 && !memcmp(r->line, "id: ", 4)) {
        c->count++;
        c->seen_seq = strtoull(r->line + 4, NULL, 10);
    } else if (!strcmp(r->line, "event: lagged")) {
        c->lagged++;
    }
    r->line_len = 0;
}

static void sse_byte(sse_client_t *c, sse_reader_t *r, char ch)
{
    if (ch == '\n')
        sse_line(c, r);
    else if (r->line_len < sizeof r->line - 1)
        r->line[r->line_len++] = ch;
}

static void sse_feed(sse_client_t *c, sse_reader_t *r, const char *p,
                     size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!r->chunked) {
            sse_byte(c, r, ch);
            continue;
        }
        switch (r->state) {
        case CH_SIZE:
        case CH_EXT:
            if (ch == '\n') {
                r->state = r->chunk_left ? CH_DATA : CH_DONE;
            } else if (r->state == CH_SIZE &&
                       ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                        (ch >= 'A' && ch <= 'F'))) {
                int d = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
                r->chunk_left = r->chunk_left * 16 + (uint64_t)d;
            } else {
                r->state = CH_EXT; /* ';' extensions, or the '\r' */
            }
            break;
        case CH_DATA:
            sse_byte(c, r, ch);
            if (--r->chunk_left == 0)
                r->state = CH_DATA_END;
            break;
        case CH_DATA_END:
            if (ch == '\n')
                r->state = CH_SIZE;
            break;
        default:
            break;
        }
    }
}

static void *sse_client_run(void *arg)
{
    sse_client_t *c = arg;
    fanout_t *f = c->f;
    int fd = tcp_connect(f->port);
    char buf[65536];
    size_t len = 0;
    int counted_connect = 0;
    if (fd < 0) {
        snprintf(c->why, sizeof c->why, "connect: %s", strerror(errno));
        goto out;
    }
    set_recv_timeout(fd, 100);
    int n = snprintf(buf, sizeof buf,
                     "GET /v1/subscribe?from_seq=%llu HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
                     (unsigned long long)f->from_seq);
    if (send_all(fd, buf, (size_t)n) < 0) {
        snprintf(c->why, sizeof c->why, "send: %s", strerror(errno));
        goto out;
    }
    sse_reader_t r = {0};
    int in_body = 0;
    uint64_t last_rx_ns = 0;
    while (!atomic_load(&f->stop)) {
        if (c->count && c->seen_seq >= atomic_load(&f->last_seq)) {
            c->done_ns = last_rx_ns;
            break;
        }
        ssize_t got = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0) {
            snprintf(c->why, sizeof c->why, "the server closed the stream "
                                            "after %llu events",
                     (unsigned long long)c->count);
            break;
        }
        uint64_t before = c->count;
        if (in_body) {
            sse_feed(c, &r, buf, (size_t)got);
        } else {
            len += (size_t)got;
            buf[len] = 0;
            char *end = strstr(buf, "\r\n\r\n");
            if (!end) {
                if (len >= sizeof buf - 1) {
                    snprintf(c->why, sizeof c->why, "response head too long");
                    break;
                }
                continue;
            }
            int status = 0;
            sscanf(buf, "HTTP/1.%*d %d", &status);
            *end = 0;
            r.chunked =
                strcasestr(buf, "\r\ntransfer-encoding: chunked") != NULL;
            if (status != 200) {
                snprintf(c->why, sizeof c->why, "GET /v1/subscribe: %d",
                         status);
                break;
            }
            in_body = 1;
            atomic_fetch_add(&f->connected, 1);
            counted_connect = 1;
            sse_feed(c, &r, end + 4, len - (size_t)(end + 4 - buf));
            len = 0;
        }
        if (c->count != before)
            last_rx_ns = cairn_bench_now_ns();
        if (r.state == CH_DONE) {
            snprintf(c->why, sizeof c->why, "the stream ended after %llu "
                                            "events",
                     (unsigned long long)c->count);
            break;
        }
    }
    if (!c->done_ns && !c->why[0])
        snprintf(c->why, sizeof c->why, "gave up after %llu events",
                 (unsigned long long)c->count);
out:
    if (fd >= 0)
        close(fd);
    if (!counted_connect)
        atomic_fetch_add(&f->connected, 1); /* do not keep the start waiting */
    atomic_fetch_add(&f->finished, 1);
    return NULL;
}

typedef struct producer {
    fanout_t *f;
    int id;
    pthread_t th;
    uint64_t events;
    uint64_t last_seq;
    char why[128];
} producer_t;

static void *producer_run(void *arg)
{
    producer_t *p = arg;
    fanout_t *f = p->f;
    conn_t *c = calloc(1, sizeof *c);
    char *req = NULL, *body = NULL;
    if (c)
        c->fd = -1;
    size_t cap = 100 * (sizeof EVENT_JSON) + 8, blen = 0;
    body = malloc(cap);
    if (!c || !body) {
        snprintf(p->why, sizeof p->why, "out of memory");
        goto out;
    }
    body[blen++] = '[';
    for (int i = 0; i < 100; i++) {
        if (i)
            body[blen++] = ',';
        memcpy(body + blen, EVENT_JSON, sizeof EVENT_JSON - 1);
        blen += sizeof EVENT_JSON - 1;
    }
    body[blen++] = ']';
    int n = asprintf(&req,
                     "POST /v1/streams/fanout-%d/events HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Cairn-Durability: sync\r\nContent-Length: %zu\r\n\r\n"
                     "%.*s",
                     p->id, blen, (int)blen, body);
    c->fd = tcp_connect(f->port);
    if (n < 0 || c->fd < 0) {
        snprintf(p->why, sizeof p->why, "cannot connect");
        goto out;
    }
    set_recv_timeout(c->fd, 10000);
    char resp[512];
    while (!atomic_load(&f->stop) &&
           cairn_bench_now_ns() - f->start_ns < f->duration_ns &&
           atomic_fetch_sub(&f->budget, 100) >= 100) {
        int st = http_exchange(c, req, (size_t)n, resp, sizeof resp);
        uint64_t last;
        if (st != 201 || json_u64(resp, "last_seq", &last) < 0) {
            snprintf(p->why, sizeof p->why, "POST batch of 100: %d %.80s", st,
                     st > 0 ? resp : "(no response)");
            break;
        }
        p->events += 100;
        p->last_seq = last;
    }
out:
    if (c && c->fd >= 0)
        close(c->fd);
    free(c);
    free(req);
    free(body);
    return NULL;
}

/*
 * Fill fan (deliveries/s) and produced (8 x the producers' events/s).
 * SSE_PRODUCERS connections append faster than 8 clients can be served,
 * so the clients fall behind and the figure is the fan-out's own rate,
 * not the producers'.  The producers stop after `seconds` or `budget`
 * events, whichever comes first, which bounds the backlog the clients
 * then drain (for at most drain_seconds).
 */
static void sse_fanout(const server_t *s, int seconds, int64_t budget,
                       int drain_seconds, outcome_t *fan, outcome_t *produced)
{
    fanout_t f = {.port = s->port,
                  .duration_ns = (uint64_t)seconds * 1000000000u};
    atomic_store(&f.budget, budget);
    atomic_store(&f.last_seq, UINT64_MAX);
    f.from_seq = next_seq(s->port);
    if (!f.from_seq) {
        snprintf(fan->why, sizeof fan->why, "probe append failed");
        return;
    }
    sse_client_t cl[SSE_CLIENTS];
    producer_t pr[SSE_PRODUCERS];
    memset(cl, 0, sizeof cl);
    memset(pr, 0, sizeof pr);
    int nstarted = 0;
    for (int i = 0; i < SSE_CLIENTS; i++) {
        cl[i].f = &f;
        if (pthread_create(&cl[i].th, NULL, sse_client_run, &cl[i]) != 0)
            break;
        nstarted++;
    }
    /* Subscriptions are open (the catch-up from from_seq would cover a
     * late one anyway, but connection set-up is not what is measured). */
    for (int waited = 0;
         atomic_load(&f.connected) < nstarted && waited < 10000; waited++)
        usleep(1000);
    f.start_ns = cairn_bench_now_ns();
    int nprod = 0;
    for (int i = 0; i < SSE_PRODUCERS && nstarted == SSE_CLIENTS; i++) {
        pr[i].f = &f;
        pr[i].id = i;
        if (pthread_create(&pr[i].th, NULL, producer_run, &pr[i]) != 0)
            break;
        nprod++;
    }
    uint64_t events = 0, last = 0;
    const char *prod_why = NULL;
    if (!nprod) {
        prod_why = "could not start the client and producer threads";
        atomic_store(&f.stop, 1);
    }
    for (int i = 0; i < nprod; i++) {
        pthread_join(pr[i].th, NULL);
        events += pr[i].events;
        if (pr[i].last_seq > last)
            last = pr[i].last_seq;
        if (pr[i].why[0] && !prod_why)
            prod_why = pr[i].why;
    }
    uint64_t prod_ns = cairn_bench_now_ns() - f.start_ns;
    /* The producers are done: every client may stop at the last seq. */
    atomic_store(&f.last_seq, last ? last : f.from_seq);
    for (int waited = 0; atomic_load(&f.finished) < nstarted &&
                         waited < drain_seconds * 100;
         waited++)
        usleep(10000);
    atomic_store(&f.stop, 1);
    uint64_t delivered = 0, end_ns = 0;
    const char *why = prod_why;
    char buf[160];
    const uint64_t expect = last >= f.from_seq ? last - f.from_seq + 1 : 0;
    for (int i = 0; i < nstarted; i++) {
        pthread_join(cl[i].th, NULL);
        delivered += cl[i].count;
        if (cl[i].done_ns > end_ns)
            end_ns = cl[i].done_ns;
        if (why)
            continue;
        if (cl[i].why[0]) {
            snprintf(buf, sizeof buf, "client %d: %s", i, cl[i].why);
            why = buf;
        } else if (cl[i].lagged) {
            snprintf(buf, sizeof buf, "client %d was told it lagged %llu "
                                      "times",
                     i, (unsigned long long)cl[i].lagged);
            why = buf;
        } else if (cl[i].count != expect) {
            snprintf(buf, sizeof buf,
                     "client %d got %llu events for seqs %llu..%llu (%llu)",
                     i, (unsigned long long)cl[i].count,
                     (unsigned long long)f.from_seq, (unsigned long long)last,
                     (unsigned long long)expect);
            why = buf;
        }
    }
    if (nstarted < SSE_CLIENTS && !why)
        why = "could not start the client threads";
    if (why || !events || end_ns <= f.start_ns) {
        snprintf(fan->why, sizeof fan->why, "%s",
                 why ? why : "nothing was delivered");
        return;
    }
    fan->value = (double)delivered * 1e9 / (double)(end_ns - f.start_ns);
    produced->value = SSE_CLIENTS * (double)events * 1e9 / (double)prod_ns;
}

/* ---- Redis, appendfsync always --------------------------------------------------- */

static int redis_ping(int port)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    set_recv_timeout(fd, 500);
    char buf[16] = "";
    int ok = send_all(fd, "PING\r\n", 6) == 0 &&
             recv(fd, buf, sizeof buf - 1, 0) > 0 && !strncmp(buf, "+PONG", 5);
    close(fd);
    return ok ? 0 : -1;
}

static double redis_xadd(int port, int pipeline, int requests)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "redis-benchmark -h 127.0.0.1 -p %d -c %d -P %d -n %d --csv "
             "XADD bench '*' data "
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
             " 2>/dev/null",
             port, REDIS_CLIENTS, pipeline, requests);
    FILE *p = popen(cmd, "r");
    char line[512];
    double rate = -1;
    while (p && fgets(line, sizeof line, p)) {
        /* "XADD bench * data ...","<rps>",... */
        char *q = strstr(line, "\",\"");
        if (q && strstr(line, "XADD"))
            rate = atof(q + 3);
    }
    if (p)
        pclose(p);
    return rate;
}

static void bench_redis(const char *root, int quick, outcome_t *pipelined,
                        outcome_t *single)
{
    if (!tool_exists("redis-server") || !tool_exists("redis-benchmark")) {
        snprintf(pipelined->why, sizeof pipelined->why,
                 "redis-server or redis-benchmark not installed");
        snprintf(single->why, sizeof single->why, "%s", pipelined->why);
        return;
    }
    char dir[600], log_path[600], ports[16];
    snprintf(dir, sizeof dir, "%s/redis", root);
    snprintf(log_path, sizeof log_path, "%s/redis.log", root);
    mkdir(dir, 0700);
    int port = free_port();
    snprintf(ports, sizeof ports, "%d", port);
    char *argv[] = {"redis-server", "--port", ports, "--bind", "127.0.0.1",
                    "--dir", dir, "--appendonly", "yes", "--appendfsync",
                    "always", "--save", "", "--protected-mode", "yes", NULL};
    pid_t pid = port > 0 ? spawn(argv, log_path, 0) : -1;
    int up = 0;
    for (int i = 0; i < 200 && pid > 0 && !up && !exited(pid); i++) {
        up = redis_ping(port) == 0;
        if (!up)
            usleep(25000);
    }
    if (!up) {
        char last[200];
        last_line(log_path, last, sizeof last);
        snprintf(pipelined->why, sizeof pipelined->why,
                 "redis-server did not start: %s", last);
        snprintf(single->why, sizeof single->why, "%s", pipelined->why);
        stop_child(pid, STOP_TIMEOUT_MS);
        return;
    }
    /* Request counts sized for about 1.5-2.5 s (quick) or 10 s on this
     * class of machine (~200 k/s pipelined, ~6 k/s one at a time). */
    pipelined->value = redis_xadd(port, 100, quick ? 300000 : 2000000);
    single->value = redis_xadd(port, 1, quick ? 15000 : 60000);
    for (int i = 0; i < 2; i++) {
        outcome_t *o = i ? single : pipelined;
        if (o->value <= 0)
            snprintf(o->why, sizeof o->why,
                     "could not parse redis-benchmark output");
    }
    stop_child(pid, STOP_TIMEOUT_MS);
}

/* ---- the suite ------------------------------------------------------------------- */

static void report(cairn_bench_t *b, const char *name, const outcome_t *o,
                   const char *base_name, const outcome_t *base)
{
    if (o->value <= 0) {
        cairn_bench_skip(b, name, o->why[0] ? o->why : "not measured");
        return;
    }
    if (base && base->value > 0)
        cairn_bench_report(b, name, "events/s", o->value, base_name,
                           base->value);
    else
        cairn_bench_report(b, name, "events/s", o->value, NULL, 0);
}

void cairn_bench_suite_http(cairn_bench_t *b);
void cairn_bench_suite_http(cairn_bench_t *b)
{
    const int quick = cairn_bench_quick(b);
    const int seconds = quick ? 3 : 10;
    outcome_t single = {0}, batch = {0}, fan = {0}, produced = {0};
    outcome_t redis_p = {0}, redis_1 = {0};
    char root[512], lua[600], why[256] = "";

    if (make_root(root, sizeof root) < 0) {
        snprintf(why, sizeof why, "mkdtemp: %s", strerror(errno));
        cairn_bench_skip(b, "http.ingest.single", why);
        cairn_bench_skip(b, "http.ingest.batch100", why);
        cairn_bench_skip(b, "http.sse.fanout", why);
        cairn_bench_skip(b, "peer.redis.xadd.pipelined", why);
        cairn_bench_skip(b, "peer.redis.xadd.single", why);
        return;
    }
    snprintf(lua, sizeof lua, "%s/append.lua", root);

    cairn_bench_progress(b, "cairn serve on a loopback port: wrk POSTs of 1 "
                            "and 100 events (sync, 32 connections); 8 SSE "
                            "clients while 16 producers append");
    server_t srv = {0};
    if (server_start(&srv, root, why, sizeof why) < 0) {
        snprintf(single.why, sizeof single.why, "%s", why);
        snprintf(batch.why, sizeof batch.why, "%s", why);
        snprintf(fan.why, sizeof fan.why, "%s", why);
    } else {
        if (!tool_exists("wrk")) {
            snprintf(single.why, sizeof single.why,
                     "wrk not installed (Debian package wrk)");
            snprintf(batch.why, sizeof batch.why, "%s", single.why);
        } else if (write_file(lua, WRK_LUA) < 0) {
            snprintf(single.why, sizeof single.why, "cannot write %.200s", lua);
            snprintf(batch.why, sizeof batch.why, "%s", single.why);
        } else {
            ingest(&srv, lua, 1, seconds, &single);
            ingest(&srv, lua, 100, seconds, &batch);
        }
        sse_fanout(&srv, seconds, quick ? 150000 : 600000, quick ? 30 : 120,
                   &fan, &produced);
        if (exited(srv.pid)) {
            /* The phases after a crash have failed on their own (no
             * connection); the server's last words say why. */
            char last[200];
            last_line(srv.log_path, last, sizeof last);
            fprintf(stderr, "cairn: bench: cairn serve died during the run: "
                            "%s\n",
                    last);
        } else {
            stop_child(srv.pid, STOP_TIMEOUT_MS);
        }
    }

    cairn_bench_progress(b, "peer: redis-server (appendfsync always), XADD "
                            "from 32 clients, pipeline 100 and 1");
    bench_redis(root, quick, &redis_p, &redis_1);
    rm_rf(root);

    report(b, "peer.redis.xadd.pipelined", &redis_p, NULL, NULL);
    report(b, "peer.redis.xadd.single", &redis_1, NULL, NULL);
    report(b, "http.ingest.single", &single, "peer.redis.xadd.single",
           &redis_1);
    report(b, "http.ingest.batch100", &batch, "peer.redis.xadd.pipelined",
           &redis_p);
    report(b, "http.sse.fanout", &fan, "http.sse.produced.x8", &produced);
}
