/*
 * bench_storage.c — durable log benchmarks (issue "durable log"):
 *
 *   log.append.sync.1t     64 B events, `sync`, one appender (events/s)
 *   log.append.sync.4t     the same, 4 appenders on distinct streams
 *   log.append.os.4t       4 appenders, `os` durability
 *   log.append.sync.p99    ack latency (us) of the sync.4t run
 *   log.replay.segments    events/s read back from sealed segments, page
 *                          cache dropped for the files first (fadvise)
 *   log.recovery.1g        seconds to open (recover) a 1 GiB log
 *
 * Peers measured in the same run, on the same disk:
 *   peer.redis.xadd.always  redis-server (appendonly yes, appendfsync
 *                           always) on a loopback port, XADD of 64 B from
 *                           4 connections, pipeline 256, by redis-benchmark
 *   peer.sqlite.wal.full    SQLite WAL, synchronous=FULL, the same events
 *                           inserted in transactions of the batch size the
 *                           sync.4t run achieved (events per fdatasync)
 *   peer.read.sequential    read() of the same segment files, cold, as
 *                           the replay and recovery baselines (bytes/s
 *                           converted to events/s at the same record size)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench.h"
#include "cairn/log.h"

static const char PAYLOAD[64] = "0123456789abcdef0123456789abcdef"
                                "0123456789abcdef012345678901234";

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cairn: bench: cannot remove %s\n", dir);
}

static void make_dir(char *buf, size_t len, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, len, "%s/cairn-bench-%s-XXXXXX", tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("cairn: bench: mkdtemp");
        exit(1);
    }
}

static cairn_log_t *open_dir(const char *dir, uint64_t segment_bytes)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.data_dir = dir;
    o.segment_bytes = segment_bytes;
    cairn_log_t *log;
    int rc = cairn_log_open(&o, &log);
    if (rc != 0) {
        fprintf(stderr, "cairn: bench: open %s: %s\n", dir, cairn_strerror(rc));
        exit(1);
    }
    return log;
}

/* ---- concurrent appenders ------------------------------------------------ */

typedef struct app_ctx {
    cairn_log_t *log;
    cairn_durability_t d;
    int pipeline; /* events in flight per thread (1..1024) */
    uint64_t duration_ns;
    _Atomic int go;
    _Atomic int ready;
} app_ctx_t;

typedef struct app_thread {
    app_ctx_t *c;
    int id;
    pthread_t th;
    uint64_t ops, elapsed;
    uint32_t *lat_us; /* per-append latency samples */
    size_t nlat, cap;
} app_thread_t;

/* Each thread keeps `pipeline` events in flight, as a Redis client with
 * pipelining does: it appends them (committed in memory), then waits once
 * for the durability asked for; every event is acknowledged when that
 * wait returns, and its latency runs from its own append to then. */
static void *appender(void *p)
{
    app_thread_t *t = p;
    app_ctx_t *c = t->c;
    char stream[32];
    int sl = snprintf(stream, sizeof stream, "bench-%d", t->id);
    cairn_event_in_t ev = {.type = "bench.event", .type_len = 11,
                           .payload = PAYLOAD, .payload_len = 64};
    cairn_append_result_t res;
    uint64_t sent[1024];
    atomic_fetch_add(&c->ready, 1);
    while (!atomic_load(&c->go))
        ;
    uint64_t start = cairn_bench_now_ns(), now = start;
    while (now - start < c->duration_ns) {
        for (int k = 0; k < c->pipeline; k++) {
            sent[k] = cairn_bench_now_ns();
            int rc = cairn_log_append(c->log, stream, (size_t)sl, &ev, 1,
                                      CAIRN_EXPECT_ANY,
                                      c->pipeline > 1 ? CAIRN_DURABILITY_MEMORY
                                                      : c->d,
                                      &res);
            if (rc != 0) {
                fprintf(stderr, "cairn: bench: append: %s\n",
                        cairn_strerror(rc));
                exit(1);
            }
        }
        if (c->pipeline > 1 && cairn_log_wait(c->log, res.last_seq, c->d)) {
            fprintf(stderr, "cairn: bench: wait failed\n");
            exit(1);
        }
        now = cairn_bench_now_ns();
        for (int k = 0; k < c->pipeline && t->nlat < t->cap; k++)
            t->lat_us[t->nlat++] = (uint32_t)((now - sent[k]) / 1000);
        t->ops += (uint64_t)c->pipeline;
    }
    t->elapsed = now - start;
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Returns events/s; *p99_us and *per_sync are filled when asked. */
static double run_appenders(const char *dir, int nthreads, int pipeline,
                            cairn_durability_t d, uint64_t duration_ns,
                            double *p99_us, double *per_sync)
{
    cairn_log_t *log = open_dir(dir, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_health_t h0, h1;
    cairn_log_health(log, &h0);
    app_ctx_t c = {.log = log, .d = d, .pipeline = pipeline,
                   .duration_ns = duration_ns};
    app_thread_t th[8];
    for (int i = 0; i < nthreads; i++) {
        memset(&th[i], 0, sizeof th[i]);
        th[i].c = &c;
        th[i].id = i;
        th[i].cap = 1u << 22;
        th[i].lat_us = malloc(th[i].cap * sizeof(uint32_t));
        pthread_create(&th[i].th, NULL, appender, &th[i]);
    }
    while (atomic_load(&c.ready) < nthreads)
        ;
    atomic_store(&c.go, 1);
    double rate = 0;
    size_t nlat = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i].th, NULL);
        rate += (double)th[i].ops * 1e9 / (double)th[i].elapsed;
        nlat += th[i].nlat;
    }
    cairn_log_health(log, &h1);
    if (p99_us) {
        uint32_t *all = malloc((nlat + 1) * sizeof *all);
        size_t k = 0;
        for (int i = 0; i < nthreads; i++) {
            memcpy(all + k, th[i].lat_us, th[i].nlat * sizeof *all);
            k += th[i].nlat;
        }
        qsort(all, k, sizeof *all, cmp_u32);
        *p99_us = k ? all[(size_t)((double)k * 0.99)] : 0;
        free(all);
    }
    if (per_sync) {
        uint64_t syncs = h1.fsyncs - h0.fsyncs;
        uint64_t events = h1.durable_seq - h0.durable_seq;
        *per_sync = syncs ? (double)events / (double)syncs : 1;
    }
    for (int i = 0; i < nthreads; i++)
        free(th[i].lat_us);
    cairn_log_close(log);
    return rate;
}

/* ---- SQLite WAL, synchronous=FULL ---------------------------------------- */

static double bench_sqlite(const char *dir, int batch, uint64_t duration_ns)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/peer.sqlite", dir);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE events(seq INTEGER PRIMARY KEY, stream "
                     "TEXT, type TEXT, data BLOB);",
                 NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO events(stream, type, data) VALUES(?,?,?)",
                       -1, &st, NULL);
    uint64_t start = cairn_bench_now_ns(), n = 0;
    while (cairn_bench_now_ns() - start < duration_ns) {
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (int i = 0; i < batch; i++) {
            sqlite3_bind_text(st, 1, "bench-0", 7, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, "bench.event", 11, SQLITE_STATIC);
            sqlite3_bind_blob(st, 3, PAYLOAD, 64, SQLITE_STATIC);
            sqlite3_step(st);
            sqlite3_reset(st);
        }
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        n += (uint64_t)batch;
    }
    double rate = (double)n * 1e9 / (double)(cairn_bench_now_ns() - start);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rate;
}

/* ---- Redis with appendfsync always ---------------------------------------- */

static double bench_redis(const char *dir, int quick, const char **why)
{
    if (system("command -v redis-server >/dev/null && "
               "command -v redis-benchmark >/dev/null") != 0) {
        *why = "redis-server or redis-benchmark not installed";
        return -1;
    }
    int port = 17000 + (int)(getpid() % 2000);
    pid_t pid = fork();
    if (pid == 0) {
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", ports, "--bind",
               "127.0.0.1", "--dir", dir, "--appendonly", "yes",
               "--appendfsync", "always", "--save", "", "--protected-mode",
               "yes", (char *)NULL);
        _exit(127);
    }
    char cmd[512];
    /* Wait until it answers (bounded). */
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        snprintf(cmd, sizeof cmd,
                 "redis-cli -p %d ping 2>/dev/null | grep -q PONG", port);
        up = system(cmd) == 0;
        if (!up)
            usleep(50000);
    }
    double rate = -1;
    if (up) {
        snprintf(cmd, sizeof cmd,
                 "redis-benchmark -p %d -c 4 -P 256 -n %d --csv XADD "
                 "bench '*' data %.*s 2>/dev/null",
                 port, quick ? 40000 : 200000, 64, PAYLOAD);
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p && fgets(line, sizeof line, p)) {
            /* "XADD ...","<rps>",... */
            char *q = strstr(line, "\",\"");
            if (q && strstr(line, "XADD"))
                rate = atof(q + 3);
        }
        if (p)
            pclose(p);
    } else {
        *why = "redis-server did not start";
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (up && rate <= 0)
        *why = "could not parse redis-benchmark output";
    return rate;
}

/* ---- replay and recovery ----------------------------------------------------- */

/* Drop the page cache for every file in dir (best effort: needs nothing but
 * the files themselves, so works unprivileged). */
static void drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            fdatasync(fd);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    if (d)
        closedir(d);
}

/* Bytes/s of plain sequential read() over the segment files, cold. */
static double read_rate(const char *dir, uint64_t *bytes_out)
{
    drop_cache(dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
    static char buf[1 << 20];
    uint64_t bytes = 0, start = cairn_bench_now_ns();
    while (d && (de = readdir(d))) {
        if (!strstr(de->d_name, ".seg"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDONLY);
        ssize_t r;
        while (fd >= 0 && (r = read(fd, buf, sizeof buf)) > 0)
            bytes += (uint64_t)r;
        if (fd >= 0)
            close(fd);
    }
    if (d)
        closedir(d);
    *bytes_out = bytes;
    return (double)bytes * 1e9 / (double)(cairn_bench_now_ns() - start);
}

/* Fill dir with about `bytes` of 64 B events (os durability, 4 streams). */
static uint64_t fill(const char *dir, uint64_t bytes)
{
    cairn_log_t *log = open_dir(dir, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_event_in_t ev[64];
    for (int i = 0; i < 64; i++)
        ev[i] = (cairn_event_in_t){.type = "bench.event", .type_len = 11,
                                   .payload = PAYLOAD, .payload_len = 64};
    cairn_append_result_t res;
    uint64_t n = 0;
    const uint64_t per = 136; /* record bytes of one such event */
    while (n * per < bytes) {
        char stream[16];
        int sl = snprintf(stream, sizeof stream, "fill-%u",
                          (unsigned)(n / 64 % 4));
        if (cairn_log_append(log, stream, (size_t)sl, ev, 64,
                             CAIRN_EXPECT_ANY, CAIRN_DURABILITY_MEMORY,
                             &res) != 0) {
            fprintf(stderr, "cairn: bench: fill failed\n");
            exit(1);
        }
        n += 64;
    }
    cairn_log_close(log);
    return n;
}

static double replay(const char *dir, uint64_t expect)
{
    drop_cache(dir);
    cairn_log_t *log = open_dir(dir, CAIRN_SEGMENT_BYTES_DEFAULT);
    drop_cache(dir); /* recovery just read them: make the reads cold */
    cairn_read_filter_t f = {0};
    cairn_log_iter_t *it;
    cairn_event_t e;
    uint64_t n = 0, start = cairn_bench_now_ns();
    if (cairn_log_iter_open(log, &f, &it) == 0) {
        while (cairn_log_iter_next(it, &e) == 1)
            n++;
        cairn_log_iter_close(it);
    }
    double rate = (double)n * 1e9 / (double)(cairn_bench_now_ns() - start);
    cairn_log_close(log);
    if (n != expect)
        fprintf(stderr, "cairn: bench: replay read %llu of %llu events\n",
                (unsigned long long)n, (unsigned long long)expect);
    return rate;
}

static double recovery_seconds(const char *dir)
{
    drop_cache(dir);
    uint64_t start = cairn_bench_now_ns();
    cairn_log_t *log = open_dir(dir, CAIRN_SEGMENT_BYTES_DEFAULT);
    double s = (double)(cairn_bench_now_ns() - start) / 1e9;
    cairn_log_close(log);
    return s;
}

void cairn_bench_suite_storage(cairn_bench_t *b);
void cairn_bench_suite_storage(cairn_bench_t *b)
{
    const int quick = cairn_bench_quick(b);
    const uint64_t d = quick ? 1000000000u : 3000000000u;
    char dir[512];
    double p99 = 0, per_sync = 1;

    cairn_bench_progress(b, "sync and os appends: 1 thread one at a time; "
                            "4 threads x 256 in flight (as redis: 4 "
                            "connections x pipeline 256)");
    make_dir(dir, sizeof dir, "sync1");
    double sync1 =
        run_appenders(dir, 1, 1, CAIRN_DURABILITY_SYNC, d, NULL, NULL);
    rm_rf(dir);
    make_dir(dir, sizeof dir, "sync4");
    double sync4 = run_appenders(dir, 4, 256, CAIRN_DURABILITY_SYNC, d, &p99,
                                 &per_sync);
    rm_rf(dir);
    make_dir(dir, sizeof dir, "os4");
    double os4 = run_appenders(dir, 4, 256, CAIRN_DURABILITY_OS, d, NULL, NULL);
    rm_rf(dir);

    cairn_bench_progress(b, "peers: redis-server (appendfsync always), "
                            "SQLite (WAL, synchronous=FULL)");
    make_dir(dir, sizeof dir, "redis");
    const char *why = NULL;
    double redis = bench_redis(dir, quick, &why);
    rm_rf(dir);
    make_dir(dir, sizeof dir, "sqlite1");
    double sqlite1 = bench_sqlite(dir, 1, d);
    rm_rf(dir);
    make_dir(dir, sizeof dir, "sqlite");
    int batch = per_sync < 1 ? 1 : (int)(per_sync + 0.5);
    double sqlite = bench_sqlite(dir, batch, d);
    rm_rf(dir);
    if (redis > 0)
        cairn_bench_report(b, "peer.redis.xadd.always", "events/s", redis,
                           NULL, 0);
    else
        cairn_bench_skip(b, "peer.redis.xadd.always", why);
    cairn_bench_report(b, "peer.sqlite.wal.full.1", "events/s", sqlite1, NULL,
                       0);
    cairn_bench_report(b, "peer.sqlite.wal.full", "events/s", sqlite, NULL, 0);
    fprintf(stderr, "  (peer.sqlite.wal.full: transactions of %d events, the "
                    "sync.4t run's events per fdatasync)\n",
            batch);
    cairn_bench_report(b, "log.append.sync.1t", "events/s", sync1,
                       "peer.sqlite.wal.full.1", sqlite1);
    if (redis > 0)
        cairn_bench_report(b, "log.append.sync.4t", "events/s", sync4,
                           "peer.redis.xadd.always", redis);
    else
        cairn_bench_report(b, "log.append.sync.4t", "events/s", sync4,
                           "peer.sqlite.wal.full", sqlite);
    cairn_bench_report(b, "log.append.os.4t", "events/s", os4,
                       "log.append.sync.4t", sync4);
    cairn_bench_report(b, "log.append.sync.p99", "us", p99, NULL, 0);

    cairn_bench_progress(b, quick ? "replay and recovery of 256 MiB"
                                  : "replay and recovery of 1 GiB");
    make_dir(dir, sizeof dir, "replay");
    uint64_t target = quick ? (UINT64_C(256) << 20) : (UINT64_C(1) << 30);
    uint64_t events = fill(dir, target);
    uint64_t bytes;
    double rd = read_rate(dir, &bytes);
    double per_event = (double)bytes / (double)events;
    double rp = replay(dir, events);
    cairn_bench_report(b, "peer.read.sequential", "events/s", rd / per_event,
                       NULL, 0);
    cairn_bench_report(b, "log.replay.segments", "events/s", rp,
                       "peer.read.sequential", rd / per_event);
    double rec = recovery_seconds(dir);
    double raw_s = (double)bytes / rd;
    if (quick) {
        /* Quick mode recovers 256 MiB; scale to the 1 GiB the name says,
         * and say so. */
        rec *= (double)(UINT64_C(1) << 30) / (double)bytes;
        raw_s *= (double)(UINT64_C(1) << 30) / (double)bytes;
        fprintf(stderr, "  (quick: log.recovery.1g scaled from %.0f MiB)\n",
                (double)bytes / (1 << 20));
    }
    cairn_bench_report(b, "log.recovery.1g", "s", rec, "peer.read.sequential",
                       raw_s);
    rm_rf(dir);
}
