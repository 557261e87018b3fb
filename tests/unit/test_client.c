/*
 * test_client.c — `cairn append`, `cairn read` and `cairn state`
 * (src/cli/client.c): argument parsing, URL and query building, and whole
 * commands against a fake HTTP server on a loopback port that records each
 * request (method, target, headers, body) and answers with a canned reply.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "test.h"

#include "cli/client.h"

/* ---- the fake server ------------------------------------------------------ */

#define FAKE_MAX 8

struct fake_request {
    char method[16];
    char target[2048];
    char headers[8192]; /* header lines, "\r\n"-separated */
    char body[65536];
    size_t body_len;
};

struct fake {
    int fd;
    int port;
    pthread_t thread;
    const char *replies[FAKE_MAX]; /* whole HTTP responses, one per conn */
    int nreplies;
    struct fake_request req[FAKE_MAX];
    int nreq;
};

static int read_request(int c, struct fake_request *r)
{
    char buf[sizeof r->headers + sizeof r->body];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        struct pollfd p = {c, POLLIN, 0};
        if (poll(&p, 1, 10000) <= 0 || len == sizeof buf - 1)
            return -1;
        ssize_t n = read(c, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    char *line_end = strstr(buf, "\r\n");
    *line_end = '\0';
    if (sscanf(buf, "%15s %2047s", r->method, r->target) != 2)
        return -1;
    size_t hlen = (size_t)(end - (line_end + 2));
    if (hlen >= sizeof r->headers)
        return -1;
    memcpy(r->headers, line_end + 2, hlen);
    r->headers[hlen] = '\0';
    size_t want = 0;
    const char *cl = strcasestr(r->headers, "Content-Length:");
    if (cl)
        want = strtoul(cl + 15, NULL, 10);
    if (want >= sizeof r->body)
        return -1;
    size_t have = len - (size_t)(end + 4 - buf);
    memcpy(r->body, end + 4, have);
    while (have < want) {
        ssize_t n = read(c, r->body + have, want - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    r->body_len = have;
    r->body[have] = '\0';
    return 0;
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    for (int i = 0; i < f->nreplies; i++) {
        struct pollfd p = {f->fd, POLLIN, 0};
        if (poll(&p, 1, 10000) <= 0)
            break;
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            break;
        if (read_request(c, &f->req[f->nreq]) == 0) {
            f->nreq++;
            const char *reply = f->replies[i];
            size_t off = 0, len = strlen(reply);
            while (off < len) {
                ssize_t n = write(c, reply + off, len - off);
                if (n <= 0)
                    break;
                off += (size_t)n;
            }
        }
        shutdown(c, SHUT_WR);
        /* Wait for the client to close its side, so the reply is read
         * whole before the socket goes away. */
        char sink[256];
        struct pollfd q = {c, POLLIN, 0};
        while (poll(&q, 1, 2000) > 0 && read(c, sink, sizeof sink) > 0)
            ;
        close(c);
    }
    return NULL;
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Start a fake server answering the NULL-terminated replies in order. */
static struct fake *fake_start(const char *first, ...)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    va_list ap;
    va_start(ap, first);
    for (const char *r = first; r; r = va_arg(ap, const char *)) {
        assert_true(f->nreplies < FAKE_MAX);
        f->replies[f->nreplies++] = r;
    }
    va_end(ap);
    f->fd = listen_loopback(&f->port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->fd);
    free(f);
}

static const char *url_of(const struct fake *f)
{
    static char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f->port);
    return url;
}

/* A port nothing listens on. */
static int closed_port(void)
{
    int port;
    int fd = listen_loopback(&port);
    close(fd);
    return port;
}

/* ---- running a command --------------------------------------------------------- */

struct run {
    int rc;
    char *out, *err;
    size_t out_len, err_len;
};

typedef int (*command_fn)(int, char **, const cairn_client_io_t *);

/* Run cmd with argv = {name, args..., NULL} and stdin = input. */
static void run(struct run *r, command_fn cmd, const char *input,
                const char *name, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)name;
    va_list ap;
    va_start(ap, name);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    memset(r, 0, sizeof *r);
    cairn_client_io_t io;
    static const char empty[] = "";
    io.in = fmemopen((void *)(input ? input : empty),
                     input ? strlen(input) : 0, "r");
    io.out = open_memstream(&r->out, &r->out_len);
    io.err = open_memstream(&r->err, &r->err_len);
    assert_non_null(io.out);
    assert_non_null(io.err);
    r->rc = cmd(argc, argv, &io);
    if (io.in)
        fclose(io.in);
    fclose(io.out);
    fclose(io.err);
}

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

static void clear_env(void)
{
    unsetenv("CAIRN_URL");
    unsetenv("CAIRN_TOKEN");
}

static int has_header(const struct fake_request *q, const char *line)
{
    char needle[600];
    snprintf(needle, sizeof needle, "%s\r\n", line);
    char hay[sizeof q->headers + 3];
    snprintf(hay, sizeof hay, "%s\r\n", q->headers);
    return strstr(hay, needle) != NULL;
}

/* Build a reply with its Content-Length filled in (static buffers). */
static const char *reply(int slot, const char *status, const char *extra,
                         const char *body)
{
    static char bufs[FAKE_MAX][4096];
    snprintf(bufs[slot], sizeof bufs[slot],
             "HTTP/1.1 %s\r\nConnection: close\r\n%sContent-Length: "
             "%zu\r\n\r\n%s",
             status, extra, strlen(body), body);
    return bufs[slot];
}

/* ---- cases: pure functions -------------------------------------------------------- */

static void escape_encodes_all_but_unreserved(void **state)
{
    (void)state;
    char out[128];
    const char *in = "position:7/a b?x=1&y#z%";
    assert_int_equal(cairn__client_escape(in, strlen(in), out, sizeof out),
                     (int)strlen("position%3A7%2Fa%20b%3Fx%3D1%26y%23z%25"));
    assert_string_equal(out, "position%3A7%2Fa%20b%3Fx%3D1%26y%23z%25");
    in = "Az09-._~";
    cairn__client_escape(in, strlen(in), out, sizeof out);
    assert_string_equal(out, "Az09-._~");
    in = "caf\xc3\xa9";
    cairn__client_escape(in, strlen(in), out, sizeof out);
    assert_string_equal(out, "caf%C3%A9");
    /* Too small: -1, never a cut name. */
    assert_int_equal(cairn__client_escape("a/b", 3, out, 5), -1);
    assert_int_equal(cairn__client_escape("a/b", 3, out, 6), 5);
}

static void read_args_build_urls(void **state)
{
    (void)state;
    clear_env();
    cairn_read_args_t a;
    char err[256], url[1024];
    char *argv1[] = {"read", "--url", "http://h:1/", "--from-seq", "5",
                     "--prefix", "auth:", "--type=a,b", "--limit", "10",
                     NULL};
    assert_int_equal(cairn__client_parse_read(10, argv1, &a, err, sizeof err),
                     0);
    assert_int_equal(a.limit, 10);
    assert_int_equal(a.follow, 0);
    assert_true(cairn__client_read_url(&a, 0, 0, a.limit, url, sizeof url) >
                0);
    assert_string_equal(url, "http://h:1/v1/events?from_seq=5&prefix=auth%3A"
                             "&type=a%2Cb&limit=10");
    /* Paging replaces the starting point; follow uses /v1/subscribe. */
    cairn__client_read_url(&a, 0, 42, 3, url, sizeof url);
    assert_string_equal(url, "http://h:1/v1/events?from_seq=42&prefix=auth%3A"
                             "&type=a%2Cb&limit=3");
    cairn__client_read_url(&a, 1, 0, 0, url, sizeof url);
    assert_string_equal(url, "http://h:1/v1/subscribe?from_seq=5&prefix="
                             "auth%3A&type=a%2Cb");

    char *argv2[] = {"read", "--from-time", "2026-11-22T10:00:00Z",
                     "--stream", "a b/c", "--follow", NULL};
    assert_int_equal(cairn__client_parse_read(6, argv2, &a, err, sizeof err),
                     0);
    assert_int_equal(a.follow, 1);
    cairn__client_read_url(&a, 1, 0, 0, url, sizeof url);
    assert_string_equal(url, "http://127.0.0.1:7070/v1/subscribe?from_time="
                             "2026-11-22T10%3A00%3A00Z&stream=a%20b%2Fc");

    /* No filter at all: the bare route.  $CAIRN_URL is the default. */
    setenv("CAIRN_URL", "https://example.org:8443", 1);
    char *argv3[] = {"read", NULL};
    assert_int_equal(cairn__client_parse_read(1, argv3, &a, err, sizeof err),
                     0);
    cairn__client_read_url(&a, 0, 0, 0, url, sizeof url);
    assert_string_equal(url, "https://example.org:8443/v1/events");
    clear_env();

    /* Usage errors. */
    char *bad1[] = {"read", "--from-seq", "1", "--from-time", "x", NULL};
    assert_int_equal(cairn__client_parse_read(5, bad1, &a, err, sizeof err),
                     2);
    assert_string_equal(err, "--from-seq and --from-time exclude each other");
    char *bad2[] = {"read", "--stream", "a", "--prefix", "b", NULL};
    assert_int_equal(cairn__client_parse_read(5, bad2, &a, err, sizeof err),
                     2);
    assert_string_equal(err, "--stream and --prefix exclude each other");
    char *bad3[] = {"read", "--limit", "0", NULL};
    assert_int_equal(cairn__client_parse_read(3, bad3, &a, err, sizeof err),
                     2);
    char *bad4[] = {"read", "--from-seq", "-3", NULL};
    assert_int_equal(cairn__client_parse_read(3, bad4, &a, err, sizeof err),
                     2);
    char *bad5[] = {"read", "--url", "127.0.0.1:7070", NULL};
    assert_int_equal(cairn__client_parse_read(3, bad5, &a, err, sizeof err),
                     2);
    char *bad6[] = {"read", "--folow", NULL};
    assert_int_equal(cairn__client_parse_read(2, bad6, &a, err, sizeof err),
                     2);
    assert_string_equal(err, "unknown option '--folow'");
    char *bad7[] = {"read", "--limit", NULL};
    assert_int_equal(cairn__client_parse_read(2, bad7, &a, err, sizeof err),
                     2);
    assert_string_equal(err, "option '--limit' needs a value");
    char *bad8[] = {"read", "stray", NULL};
    assert_int_equal(cairn__client_parse_read(2, bad8, &a, err, sizeof err),
                     2);
}

static void usage_errors_and_help(void **state)
{
    (void)state;
    clear_env();
    struct run r;
    run(&r, cairn__client_append, NULL, "append", "--type", "t", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "cairn: append: --stream is required (see "
                               "cairn append --help)\n");
    run_free(&r);
    run(&r, cairn__client_append, NULL, "append", "--stream", "s", "--type",
        "t", "--expected-version", "soon", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--expected-version must be"));
    run_free(&r);
    run(&r, cairn__client_append, NULL, "append", "--stream", "s", "--type",
        "t", "--durability", "disk", NULL);
    assert_int_equal(r.rc, 2);
    run_free(&r);
    run(&r, cairn__client_append, NULL, "append", "--stream", "s", "--type",
        "t", "--data", "{oops", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "cairn: append: --data is not JSON"));
    run_free(&r);
    run(&r, cairn__client_append, NULL, "append", "--stream", "s", "--data",
        "{}", NULL);
    assert_int_equal(r.rc, 2);
    run_free(&r);
    run(&r, cairn__client_state, NULL, "state", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "cairn: state: give one STREAM (see cairn "
                               "state --help)\n");
    run_free(&r);
    run(&r, cairn__client_state, NULL, "state", "a", "b", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "cairn: state: unexpected argument 'b' (see "
                               "cairn state --help)\n");
    run_free(&r);
    run(&r, cairn__client_read, NULL, "read", "--stream", "a", "--prefix",
        "b", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "cairn: read: --stream and --prefix exclude "
                               "each other (see cairn read --help)\n");
    run_free(&r);

    command_fn cmds[] = {cairn__client_append, cairn__client_read,
                         cairn__client_state};
    const char *names[] = {"append", "read", "state"};
    for (int i = 0; i < 3; i++) {
        run(&r, cmds[i], NULL, names[i], "--help", NULL);
        assert_int_equal(r.rc, 0);
        char want[64];
        snprintf(want, sizeof want, "usage: cairn %s ", names[i]);
        assert_true(!strncmp(r.out, want, strlen(want)));
        assert_int_equal(r.err_len, 0);
        run_free(&r);
    }
}

/* ---- cases: against the fake server ------------------------------------------------- */

static void append_201_sends_event_and_prints_reply(void **state)
{
    (void)state;
    clear_env();
    const char *body = "{\"stream\":\"position:7/a b\",\"first_seq\":12,"
                       "\"last_seq\":12,\"version\":1}";
    struct fake *f = fake_start(reply(0, "201 Created", "", body), NULL);
    struct run r;
    run(&r, cairn__client_append, NULL, "append", "--url", url_of(f),
        "--token", "s3cret-token-0123456789", "--stream", "position:7/a b",
        "--type", "POSITION_OPENED", "--data", "{\"price\":1.5,\"n\":[1,2]}",
        "--expected-version", "no-stream", "--durability", "os", NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(f->nreq, 1);
    close(f->fd);
    free(f);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.err_len, 0);
    char want[512];
    snprintf(want, sizeof want, "%s\n", body);
    assert_string_equal(r.out, want);
    run_free(&r);
}

/* What the server receives: method, path, headers and body. */
static void append_sends_method_path_headers_body(void **state)
{
    (void)state;
    clear_env();
    struct fake *f = fake_start(reply(0, "201 Created", "", "{}"), NULL);
    struct run r;
    setenv("CAIRN_TOKEN", "env-token-0123456789abcdef", 1);
    run(&r, cairn__client_append, NULL, "append", "--url", url_of(f),
        "--stream", "position:7/a b", "--type", "POSITION_OPENED", "--data",
        "{\"price\":1.5}", "--expected-version", "3", "--durability", "os",
        NULL);
    clear_env();
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(f->nreq, 1);
    struct fake_request *q = &f->req[0];
    assert_string_equal(q->method, "POST");
    assert_string_equal(q->target, "/v1/streams/position%3A7%2Fa%20b/events");
    assert_true(has_header(q, "Authorization: Bearer "
                              "env-token-0123456789abcdef"));
    assert_true(has_header(q, "Content-Type: application/json"));
    assert_true(has_header(q, "Cairn-Expected-Version: 3"));
    assert_true(has_header(q, "Cairn-Durability: os"));
    json_t *ev = json_loadb(q->body, q->body_len, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "type")),
                        "POSITION_OPENED");
    assert_true(json_real_value(json_object_get(
                    json_object_get(ev, "data"), "price")) == 1.5);
    assert_int_equal(json_object_size(ev), 2);
    json_decref(ev);
    close(f->fd);
    free(f);
    run_free(&r);

    /* Without --data the event carries an empty object, and without the
     * optional flags no Cairn-* header is sent. */
    f = fake_start(reply(0, "201 Created", "", "{}"), NULL);
    run(&r, cairn__client_append, NULL, "append", "--url", url_of(f),
        "--stream", "s", "--type", "t", NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(f->req[0].body, "{\"type\":\"t\",\"data\":{}}");
    assert_null(strstr(f->req[0].headers, "Cairn-"));
    assert_null(strstr(f->req[0].headers, "Authorization"));
    close(f->fd);
    free(f);
    run_free(&r);
}

static void append_409_prints_the_server_error(void **state)
{
    (void)state;
    clear_env();
    struct fake *f = fake_start(
        reply(0, "409 Conflict", "",
              "{\"error\":{\"code\":\"version_conflict\",\"message\":"
              "\"expected version 0, stream is at 3\"}}"),
        NULL);
    struct run r;
    run(&r, cairn__client_append, NULL, "append", "--url", url_of(f),
        "--stream", "s", "--type", "t", "--expected-version", "0", NULL);
    fake_stop(f);
    assert_int_equal(r.rc, 1);
    assert_int_equal(r.out_len, 0);
    assert_string_equal(r.err, "cairn: append: HTTP 409 version_conflict: "
                               "expected version 0, stream is at 3\n");
    run_free(&r);
}

static void append_503_is_a_failure(void **state)
{
    (void)state;
    clear_env();
    struct fake *f = fake_start(
        reply(0, "503 Service Unavailable", "Retry-After: 2\r\n",
              "{\"error\":{\"code\":\"breaker_open\",\"message\":\"the "
              "stream's circuit breaker is open\"}}"),
        reply(1, "503 Service Unavailable", "", "overloaded\nsecond line"),
        NULL);
    struct run r;
    run(&r, cairn__client_append, NULL, "append", "--url", url_of(f),
        "--stream", "s", "--type", "t", NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "cairn: append: HTTP 503 breaker_open: the "
                               "stream's circuit breaker is open\n");
    run_free(&r);
    /* A body that is not cairn's error shape: its first line. */
    run(&r, cairn__client_append, NULL, "append", "--url", url_of(f),
        "--stream", "s", "--type", "t", NULL);
    fake_stop(f);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "cairn: append: HTTP 503: overloaded\n");
    run_free(&r);
}

static void append_ndjson_batch_from_stdin(void **state)
{
    (void)state;
    clear_env();
    struct fake *f = fake_start(
        reply(0, "201 Created", "",
              "{\"stream\":\"s\",\"first_seq\":1,\"last_seq\":2,"
              "\"version\":2}"),
        NULL);
    struct run r;
    run(&r, cairn__client_append,
        "{\"type\":\"a\",\"data\":{\"k\":1}}\r\n\n  \n{\"type\":\"b\"}", "append",
        "--url", url_of(f), "--stream", "s", NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(f->req[0].method, "POST");
    assert_string_equal(f->req[0].target, "/v1/streams/s/events");
    assert_true(has_header(&f->req[0], "Content-Type: application/x-ndjson"));
    assert_string_equal(f->req[0].body,
                        "{\"type\":\"a\",\"data\":{\"k\":1}}\n{\"type\":\"b\"}\n");
    assert_non_null(strstr(r.out, "\"last_seq\":2"));
    close(f->fd);
    free(f);
    run_free(&r);

    /* A bad line is reported with its number and nothing is sent (the
     * port is closed: contacting it would be a different error). */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    run(&r, cairn__client_append, "{\"type\":\"a\"}\n[1,2]\n", "append",
        "--url", url, "--stream", "s", NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "cairn: append: stdin line 2: not a JSON "
                               "object\n");
    run_free(&r);
    run(&r, cairn__client_append, "{\"data\":1}\n", "append", "--url", url,
        "--stream", "s", NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "cairn: append: stdin line 1: no string "
                               "\"type\"\n");
    run_free(&r);
    run(&r, cairn__client_append, "\n\n", "append", "--url", url, "--stream",
        "s", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "no events on stdin"));
    run_free(&r);
}

static void connection_refused_is_a_failure(void **state)
{
    (void)state;
    clear_env();
    char url[64], want[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    struct run r;
    run(&r, cairn__client_state, NULL, "state", "--url", url, "x", NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want, "cairn: state: %s/v1/streams/x: ", url);
    assert_true(!strncmp(r.err, want, strlen(want)));
    assert_non_null(strchr(r.err, '\n'));
    assert_ptr_equal(strchr(r.err, '\n'), r.err + r.err_len - 1);
    run_free(&r);
    run(&r, cairn__client_read, NULL, "read", "--url", url, "--follow", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "cairn: read: "));
    run_free(&r);
}

static void state_prints_json_and_404_fails(void **state)
{
    (void)state;
    clear_env();
    const char *body = "{\"stream\":\"a/b\",\"version\":3,\"event_count\":3}";
    struct fake *f = fake_start(
        reply(0, "200 OK", "", body),
        reply(1, "404 Not Found", "",
              "{\"error\":{\"code\":\"not_found\",\"message\":\"no stream "
              "'nope'\"}}"),
        NULL);
    struct run r;
    run(&r, cairn__client_state, NULL, "state", "--url", url_of(f), "a/b",
        NULL);
    assert_int_equal(r.rc, 0);
    char want[256];
    snprintf(want, sizeof want, "%s\n", body);
    assert_string_equal(r.out, want);
    run_free(&r);
    run(&r, cairn__client_state, NULL, "state", "--url", url_of(f), "nope",
        NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "cairn: state: HTTP 404 not_found: no stream "
                               "'nope'\n");
    assert_string_equal(f->req[0].method, "GET");
    assert_string_equal(f->req[0].target, "/v1/streams/a%2Fb");
    assert_string_equal(f->req[1].target, "/v1/streams/nope");
    close(f->fd);
    free(f);
    run_free(&r);
}

static void read_pages_until_the_end(void **state)
{
    (void)state;
    clear_env();
    struct fake *f = fake_start(
        reply(0, "200 OK", "Cairn-Next-Seq: 3\r\n",
              "{\"seq\":1}\n{\"seq\":2}\n"),
        reply(1, "200 OK", "cairn-next-seq: 4\r\n", "{\"seq\":3}\n"),
        reply(2, "200 OK", "Cairn-Next-Seq: 4\r\n", ""), NULL);
    struct run r;
    run(&r, cairn__client_read, NULL, "read", "--url", url_of(f),
        "--from-seq", "1", "--stream", "s", "--type", "a", NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n");
    assert_int_equal(f->nreq, 3);
    assert_string_equal(f->req[0].target,
                        "/v1/events?from_seq=1&stream=s&type=a");
    assert_string_equal(f->req[1].target,
                        "/v1/events?from_seq=3&stream=s&type=a");
    assert_string_equal(f->req[2].target,
                        "/v1/events?from_seq=4&stream=s&type=a");
    assert_true(has_header(&f->req[0], "Accept: application/x-ndjson"));
    close(f->fd);
    free(f);
    run_free(&r);

    /* --limit: asked of the server, and enforced on what is printed. */
    f = fake_start(reply(0, "200 OK", "Cairn-Next-Seq: 4\r\n",
                         "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n"),
                   NULL);
    run(&r, cairn__client_read, NULL, "read", "--url", url_of(f), "--limit",
        "2", NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "{\"seq\":1}\n{\"seq\":2}\n");
    assert_int_equal(f->nreq, 1);
    assert_string_equal(f->req[0].target, "/v1/events?limit=2");
    close(f->fd);
    free(f);
    run_free(&r);

    /* An error on a later page fails the command. */
    f = fake_start(reply(0, "200 OK", "Cairn-Next-Seq: 2\r\n", "{\"seq\":1}\n"),
                   reply(1, "401 Unauthorized", "",
                         "{\"error\":{\"code\":\"unauthorized\",\"message\":"
                         "\"missing bearer token\"}}"),
                   NULL);
    run(&r, cairn__client_read, NULL, "read", "--url", url_of(f), NULL);
    fake_stop(f);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "{\"seq\":1}\n");
    assert_string_equal(r.err, "cairn: read: HTTP 401 unauthorized: missing "
                               "bearer token\n");
    run_free(&r);
}

static void read_follow_resumes_with_last_event_id(void **state)
{
    (void)state;
    clear_env();
    /* The first connection delivers two events and drops; the second
     * delivers the third.  No Content-Length: the body ends at close. */
    struct fake *f = fake_start(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Connection: close\r\n\r\n"
        ": connected\n\n"
        "id: 1\nevent: a\ndata: {\"seq\":1,\"type\":\"a\"}\n\n"
        "id: 2\r\nevent: b\r\ndata: {\"seq\":2,\r\ndata: \"type\":\"b\"}\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Connection: close\r\n\r\n"
        ": heartbeat\n\n"
        "id: 3\nevent: a\ndata: {\"seq\":3,\"type\":\"a\"}\n\n"
        "id: 4\nevent: a\ndata: {\"seq\":4,\"type\":\"a\"}\n\n",
        NULL);
    struct run r;
    run(&r, cairn__client_read, NULL, "read", "--url", url_of(f), "--follow",
        "--prefix", "pos:", "--limit", "3", NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "{\"seq\":1,\"type\":\"a\"}\n"
                               "{\"seq\":2,\n\"type\":\"b\"}\n"
                               "{\"seq\":3,\"type\":\"a\"}\n");
    assert_int_equal(f->nreq, 2);
    assert_string_equal(f->req[0].target, "/v1/subscribe?prefix=pos%3A");
    assert_true(has_header(&f->req[0], "Accept: text/event-stream"));
    assert_null(strstr(f->req[0].headers, "Last-Event-ID"));
    assert_string_equal(f->req[1].target,
                        "/v1/subscribe?from_seq=3&prefix=pos%3A");
    assert_true(has_header(&f->req[1], "Last-Event-ID: 2"));
    assert_non_null(strstr(r.err, "connection lost"));
    close(f->fd);
    free(f);
    run_free(&r);

    /* An HTTP error on subscribe is final, not retried. */
    f = fake_start(reply(0, "403 Forbidden", "",
                         "{\"error\":{\"code\":\"forbidden\",\"message\":"
                         "\"role read needed\"}}"),
                   NULL);
    run(&r, cairn__client_read, NULL, "read", "--url", url_of(f), "--follow",
        NULL);
    fake_stop(f);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "cairn: read: HTTP 403 forbidden: role read "
                               "needed\n");
    run_free(&r);
}

static const struct CMUnitTest cases[] = {
    cmocka_unit_test(escape_encodes_all_but_unreserved),
    cmocka_unit_test(read_args_build_urls),
    cmocka_unit_test(usage_errors_and_help),
    cmocka_unit_test(append_201_sends_event_and_prints_reply),
    cmocka_unit_test(append_sends_method_path_headers_body),
    cmocka_unit_test(append_409_prints_the_server_error),
    cmocka_unit_test(append_503_is_a_failure),
    cmocka_unit_test(append_ndjson_batch_from_stdin),
    cmocka_unit_test(connection_refused_is_a_failure),
    cmocka_unit_test(state_prints_json_and_404_fails),
    cmocka_unit_test(read_pages_until_the_end),
    cmocka_unit_test(read_follow_resumes_with_last_event_id),
};

CAIRN_TEST_MAIN(cases)
