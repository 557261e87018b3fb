/*
 * test_storage.c — the durable log: round trips, segment rolls, torn tails,
 * flipped bits, I/O failures, retention, compression and recovery.  Twin
 * cases ("_lockfree" / "_mutex") run against both implementations.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#include "cairn/log.h"
#include "storage/segment.h"
#include "storage/store.h"

static int ENHANCED = 1, MUTEX = 0;

typedef struct fixture {
    char dir[64];
    cairn_log_opts_t o;
    char err[512];
} fixture_t;

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char path[512];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void fx_init(fixture_t *fx, void **state, uint64_t segment_bytes)
{
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cairn-test-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    cairn_log_opts_init(&fx->o);
    fx->o.enhanced_mode = state && *state ? *(int *)*state : 1;
    fx->o.buffer_size_mb = 1;
    fx->o.data_dir = fx->dir;
    fx->o.segment_bytes = segment_bytes;
    fx->o.error_detail = fx->err;
    fx->o.error_detail_len = sizeof fx->err;
    fx->err[0] = 0;
}

static cairn_log_t *fx_open(fixture_t *fx)
{
    cairn_log_t *log = NULL;
    int rc = cairn_log_open(&fx->o, &log);
    if (rc != 0)
        fail_msg("open: %s: %s", cairn_strerror(rc), fx->err);
    return log;
}

static void payload_for(uint64_t i, char *buf, size_t *len)
{
    *len = (size_t)(i * 37 % 180) + 1;
    for (size_t k = 0; k < *len; k++)
        buf[k] = (char)('A' + (i + k) % 23);
}

/* Append n single events to "s-<i % nstreams>" with the given durability;
 * event i (0-based, counting from base) carries payload_for(base + i). */
static void append_n(cairn_log_t *log, uint64_t base, uint64_t n,
                     unsigned nstreams, cairn_durability_t d)
{
    char buf[256], stream[32];
    for (uint64_t i = base; i < base + n; i++) {
        cairn_event_in_t e;
        memset(&e, 0, sizeof e);
        size_t len;
        payload_for(i, buf, &len);
        e.type = "t";
        e.type_len = 1;
        e.payload = buf;
        e.payload_len = len;
        e.time_ns = (int64_t)(1000 + i);
        int sl =
            snprintf(stream, sizeof stream, "s-%u", (unsigned)(i % nstreams));
        cairn_append_result_t res;
        int rc = cairn_log_append(log, stream, (size_t)sl, &e, 1,
                                  CAIRN_EXPECT_ANY, d, &res);
        if (rc != 0)
            fail_msg("append %lu: %s", (unsigned long)i, cairn_strerror(rc));
        assert_int_equal(res.first_seq, i + 1);
    }
}

/* Read from seq 1 and check the payloads of the first expect_n events;
 * with exact, there must be no more.  Returns how many were read. */
static uint64_t check_prefix(cairn_log_t *log, uint64_t expect_n, int exact)
{
    cairn_read_filter_t f = {0};
    f.from_seq = 1;
    cairn_log_iter_t *it;
    int rc = cairn_log_iter_open(log, &f, &it);
    if (rc != 0)
        fail_msg("iter_open: %s", cairn_strerror(rc));
    cairn_event_t ev;
    uint64_t n = 0;
    char buf[256];
    while ((rc = cairn_log_iter_next(it, &ev)) == 1) {
        size_t len;
        if (n >= expect_n && !exact) {
            n++;
            continue;
        }
        payload_for(n, buf, &len);
        assert_int_equal(ev.seq, n + 1);
        assert_int_equal(ev.payload_len, len);
        assert_memory_equal(ev.payload, buf, len);
        assert_int_equal(ev.time_ns, (int64_t)(1000 + n));
        n++;
    }
    if (rc != 0)
        fail_msg("iter_next: %s", cairn_strerror(rc));
    cairn_log_iter_close(it);
    if (exact)
        assert_int_equal(n, expect_n);
    else
        assert_true(n >= expect_n);
    return n;
}

static uint64_t check_all(cairn_log_t *log, uint64_t expect_n)
{
    return check_prefix(log, expect_n, 1);
}

static void roundtrip_and_reopen(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 100, 3, CAIRN_DURABILITY_SYNC);
    append_n(log, 100, 100, 3, CAIRN_DURABILITY_OS);
    append_n(log, 200, 100, 3, CAIRN_DURABILITY_MEMORY);
    cairn_log_health_t h;
    cairn_log_health(log, &h);
    assert_true(h.durable_seq > 100);
    assert_true(h.written_seq > 200);
    check_all(log, 300);
    cairn_log_close(log);

    log = fx_open(&fx);
    assert_int_equal(cairn_log_next_seq(log), 301);
    check_all(log, 300);
    cairn_stream_info_t si;
    assert_int_equal(cairn_log_stream_info(log, "s-1", 3, &si), 0);
    assert_int_equal(si.version, 100);
    assert_int_equal(si.first_seq, 2);
    assert_int_equal(si.last_seq, 299);
    /* Appends continue the versions and seqs. */
    cairn_append_result_t res;
    cairn_event_in_t e = {.type = "t", .type_len = 1};
    assert_int_equal(cairn_log_append(log, "s-1", 3, &e, 1, 100,
                                      CAIRN_DURABILITY_SYNC, &res),
                     0);
    assert_int_equal(res.first_seq, 301);
    assert_int_equal(res.version, 101);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static void segments_roll_and_read_back(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_MIN);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 3000, 7, CAIRN_DURABILITY_OS);
    cairn_log_health_t h;
    cairn_log_health(log, &h);
    assert_true(h.segments >= 5);
    check_all(log, 3000);
    /* Start reads in the middle of a segment, by seq and by time. */
    cairn_read_filter_t f = {0};
    f.from_seq = 1777;
    cairn_log_iter_t *it;
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    assert_int_equal(ev.seq, 1777);
    cairn_log_iter_close(it);
    memset(&f, 0, sizeof f);
    f.time_from_ns = 1000 + 2500; /* event i has time 1000 + i */
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    assert_int_equal(ev.seq, 2501);
    cairn_log_iter_close(it);
    cairn_log_close(log);

    log = fx_open(&fx);
    check_all(log, 3000);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

/* Path of the newest segment file. */
static void last_segment(const char *dir, char *path, size_t len, int nth)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    uint64_t seqs[4096];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t seq;
        int comp;
        if (cairn__seg_name(de->d_name, &seq, &comp) && !comp && n < 4096)
            seqs[n++] = seq;
    }
    closedir(d);
    assert_true(n > nth);
    /* sort descending */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (seqs[j] > seqs[i]) {
                uint64_t t = seqs[i];
                seqs[i] = seqs[j];
                seqs[j] = t;
            }
    cairn__seg_path(path, len, dir, seqs[nth], 0);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Cut the last record at every byte offset: recovery keeps exactly the
 * complete records, and appends continue after them. */
static void torn_tail_every_offset(void **state)
{
    (void)state;
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 20, 2, CAIRN_DURABILITY_SYNC);
    cairn_log_close(log);
    char path[512];
    last_segment(fx.dir, path, sizeof path, 0);
    off_t full = file_size(path);
    /* The last record's length: 56 + stream 3 + type 1 + payload, padded. */
    size_t plen;
    char buf[256];
    payload_for(19, buf, &plen);
    off_t last_len = (off_t)((56 + 3 + 1 + plen + 7) & ~(size_t)7);
    char *copy = malloc((size_t)full);
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, copy, (size_t)full), full);
    close(fd);
    for (off_t cut = full - last_len; cut < full; cut++) {
        fd = open(path, O_WRONLY | O_TRUNC);
        assert_int_equal(write(fd, copy, (size_t)cut), cut);
        close(fd);
        log = fx_open(&fx);
        assert_int_equal(cairn_log_next_seq(log), 20);
        check_all(log, 19);
        cairn_log_close(log);
    }
    /* And appends after a recovered tear land right after the tear. */
    log = fx_open(&fx);
    append_n(log, 19, 5, 2, CAIRN_DURABILITY_SYNC);
    check_all(log, 24);
    cairn_log_close(log);
    free(copy);
    rm_rf(fx.dir);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* A flipped bit inside a sealed segment: open refuses, naming file and
 * offset; with recovery_truncate the log is cut there. */
static void flipped_bit_in_sealed_segment(void **state)
{
    (void)state;
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_MIN);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 2000, 3, CAIRN_DURABILITY_OS);
    cairn_log_close(log);
    char path[512];
    last_segment(fx.dir, path, sizeof path, 2); /* a sealed one */
    flip_byte(path, 64 + 200);
    assert_int_equal(cairn_log_open(&fx.o, &log), CAIRN_ECORRUPT);
    assert_non_null(strstr(fx.err, path));
    assert_non_null(strstr(fx.err, "offset"));
    fx.o.recovery_truncate = 1;
    log = fx_open(&fx);
    uint64_t kept = cairn_log_next_seq(log) - 1;
    assert_true(kept < 2000);
    check_all(log, kept);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

/* A flipped bit in data already recovered is caught on read: the reader
 * gets CAIRN_ECORRUPT, never the damaged bytes. */
static void flipped_bit_never_served(void **state)
{
    (void)state;
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_MIN);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 2000, 3, CAIRN_DURABILITY_SYNC);
    char path[512];
    last_segment(fx.dir, path, sizeof path, 3);
    flip_byte(path, 64 + 300);
    cairn_read_filter_t f = {0};
    f.from_seq = 1;
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    cairn_event_t ev;
    int rc;
    while ((rc = cairn_log_iter_next(it, &ev)) == 1) {
        size_t len;
        char buf[256];
        payload_for(ev.seq - 1, buf, &len);
        assert_memory_equal(ev.payload, buf, len); /* never damaged */
    }
    assert_int_equal(rc, CAIRN_ECORRUPT);
    cairn_log_iter_close(it);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

/* A batch cut by a crash is dropped whole. */
static void torn_batch_dropped_whole(void **state)
{
    (void)state;
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 3, 1, CAIRN_DURABILITY_SYNC);
    cairn_event_in_t evs[4];
    for (int i = 0; i < 4; i++) {
        memset(&evs[i], 0, sizeof evs[i]);
        evs[i].type = "b";
        evs[i].type_len = 1;
        evs[i].payload = "0123456789";
        evs[i].payload_len = 10;
    }
    cairn_append_result_t res;
    assert_int_equal(cairn_log_append(log, "s-0", 3, evs, 4, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_SYNC, &res),
                     0);
    cairn_log_close(log);
    char path[512];
    last_segment(fx.dir, path, sizeof path, 0);
    /* Each batch record is 56 + 3 + 1 + 10 = 70 -> 72 bytes: cut inside
     * the third. */
    off_t full = file_size(path);
    assert_int_equal(truncate(path, full - 72 - 20), 0);
    log = fx_open(&fx);
    assert_int_equal(cairn_log_next_seq(log), 4);
    cairn_stream_info_t si;
    assert_int_equal(cairn_log_stream_info(log, "s-0", 3, &si), 0);
    assert_int_equal(si.version, 3);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

/* ---- I/O failures through the test seam ---------------------------------- */

static _Atomic int fail_after_writes = -1, fail_errno = 0;
static _Atomic int syncs_after_failure = 0, sync_fails = 0;

static ssize_t faulty_pwrite(int fd, const void *b, size_t n, off_t off)
{
    if (atomic_load(&fail_after_writes) == 0) {
        errno = atomic_load(&fail_errno);
        return -1;
    }
    if (atomic_load(&fail_after_writes) > 0)
        atomic_fetch_sub(&fail_after_writes, 1);
    return pwrite(fd, b, n, off);
}

static int faulty_fdatasync(int fd)
{
    if (atomic_load(&sync_fails)) {
        atomic_fetch_add(&syncs_after_failure, 1);
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static const cairn__io_t faulty_io = {faulty_pwrite, faulty_fdatasync};

static void io_error_turns_read_only(cairn_durability_t d, int err, int on_sync)
{
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 50, 2, CAIRN_DURABILITY_SYNC);
    atomic_store(&fail_errno, err);
    atomic_store(&syncs_after_failure, 0);
    if (on_sync)
        atomic_store(&sync_fails, 1);
    else
        atomic_store(&fail_after_writes, 0);
    cairn__store_set_io(&faulty_io);
    cairn_event_in_t e = {.type = "t", .type_len = 1};
    cairn_append_result_t res;
    assert_int_equal(
        cairn_log_append(log, "x", 1, &e, 1, CAIRN_EXPECT_ANY, d, &res),
        CAIRN_EREAD_ONLY);
    cairn_log_health_t h;
    cairn_log_health(log, &h);
    assert_int_equal(h.read_only, 1);
    assert_int_equal(h.error, on_sync ? -EIO : -err);
    /* Later appends fail fast; the failed fsync is never retried. */
    assert_int_equal(cairn_log_append(log, "x", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res),
                     CAIRN_EREAD_ONLY);
    if (on_sync)
        assert_int_equal(atomic_load(&syncs_after_failure), 1);
    /* Acknowledged data is still readable.  (The refused event may be seen
     * too: readers see what is committed in memory, and it was.) */
    check_prefix(log, 50, 0);
    cairn_log_close(log);
    cairn__store_set_io(NULL);
    atomic_store(&fail_after_writes, -1);
    atomic_store(&sync_fails, 0);
    /* And survives a reopen. */
    log = fx_open(&fx);
    assert_true(cairn_log_next_seq(log) >= 51);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static void enospc_on_write(void **state)
{
    (void)state;
    io_error_turns_read_only(CAIRN_DURABILITY_OS, ENOSPC, 0);
}

static void edquot_on_write(void **state)
{
    (void)state;
    io_error_turns_read_only(CAIRN_DURABILITY_SYNC, EDQUOT, 0);
}

static void eio_on_fsync(void **state)
{
    (void)state;
    io_error_turns_read_only(CAIRN_DURABILITY_SYNC, EIO, 1);
}

static void retention_by_bytes(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_MIN);
    fx.o.retention_bytes = 3 * CAIRN_SEGMENT_BYTES_MIN;
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 5000, 3, CAIRN_DURABILITY_OS);
    cairn_log_health_t h;
    cairn_log_health(log, &h);
    assert_true(h.segments <= 5);
    uint64_t first = cairn_log_first_seq(log);
    assert_true(first > 1);
    cairn_read_filter_t f = {0};
    f.from_seq = 1;
    cairn_log_iter_t *it;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), CAIRN_EEXPIRED);
    f.from_seq = first;
    assert_int_equal(cairn_log_iter_open(log, &f, &it), 0);
    cairn_event_t ev;
    assert_int_equal(cairn_log_iter_next(it, &ev), 1);
    assert_int_equal(ev.seq, first);
    cairn_log_iter_close(it);
    cairn_log_close(log);
    /* Reopen: the log starts at the oldest kept segment. */
    log = fx_open(&fx);
    assert_int_equal(cairn_log_first_seq(log), first);
    assert_int_equal(cairn_log_next_seq(log), 5001);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name), s = strlen(suffix);
        if (l > s && strcmp(de->d_name + l - s, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void compressed_round_trip(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_MIN);
    fx.o.compress_sealed = 1;
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 3000, 5, CAIRN_DURABILITY_OS);
    /* The compactor runs in the background: wait for it (bounded). */
    for (int i = 0; i < 500 && count_files(fx.dir, ".seg.zst") < 3; i++)
        usleep(10000);
    assert_true(count_files(fx.dir, ".seg.zst") >= 3);
    check_all(log, 3000);
    cairn_log_close(log);
    log = fx_open(&fx);
    check_all(log, 3000);
    append_n(log, 3000, 10, 5, CAIRN_DURABILITY_SYNC);
    check_all(log, 3010);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static void thousands_of_streams_recovered(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx);
    append_n(log, 0, 15000, 5000, CAIRN_DURABILITY_MEMORY);
    assert_int_equal(cairn_log_sync(log), 0);
    cairn_log_close(log);
    log = fx_open(&fx);
    for (unsigned s = 0; s < 5000; s += 499) {
        char name[32];
        int n = snprintf(name, sizeof name, "s-%u", s);
        cairn_stream_info_t si;
        assert_int_equal(cairn_log_stream_info(log, name, (size_t)n, &si), 0);
        assert_int_equal(si.version, 3);
        assert_int_equal(si.first_seq, s + 1);
        assert_int_equal(si.last_seq, s + 1 + 10000);
    }
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static void directory_is_locked(void **state)
{
    (void)state;
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx), *second;
    assert_int_equal(cairn_log_open(&fx.o, &second), CAIRN_ELOCKED);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static void idempotency_survives_restart(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_DEFAULT);
    cairn_log_t *log = fx_open(&fx);
    cairn_event_in_t e = {
        .type = "t", .type_len = 1, .id = "req-9", .id_len = 5};
    cairn_append_result_t res, again;
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_SYNC, &res),
                     0);
    cairn_log_close(log);
    log = fx_open(&fx);
    assert_int_equal(cairn_log_append(log, "s", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_SYNC, &again),
                     0);
    assert_int_equal(again.duplicate, 1);
    assert_int_equal(again.first_seq, res.first_seq);
    assert_int_equal(cairn_log_next_seq(log), 2);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

static void bad_storage_options(void **state)
{
    (void)state;
    fixture_t fx;
    fx_init(&fx, NULL, CAIRN_SEGMENT_BYTES_MIN - 1);
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&fx.o, &log), CAIRN_EBAD_OPTION);
    fx.o.segment_bytes = CAIRN_SEGMENT_BYTES_CAP + 1;
    assert_int_equal(cairn_log_open(&fx.o, &log), CAIRN_EBAD_OPTION);
    fx.o.segment_bytes = CAIRN_SEGMENT_BYTES_DEFAULT;
    fx.o.sync_interval_ms = 0;
    assert_int_equal(cairn_log_open(&fx.o, &log), CAIRN_EBAD_OPTION);
    rm_rf(fx.dir);
}

/* ---- reading while writing: segments -> ring without gap ----------------- */

typedef struct writer_arg {
    cairn_log_t *log;
    uint64_t n;
} writer_arg_t;

static void *writer_thread(void *p)
{
    writer_arg_t *a = p;
    char buf[256];
    for (uint64_t i = 0; i < a->n; i++) {
        cairn_event_in_t e;
        memset(&e, 0, sizeof e);
        size_t len;
        payload_for(i, buf, &len);
        e.type = "t";
        e.type_len = 1;
        e.payload = buf;
        e.payload_len = len;
        e.time_ns = (int64_t)(1000 + i);
        cairn_append_result_t res;
        int rc;
        while ((rc = cairn_log_append(a->log, "w", 1, &e, 1, CAIRN_EXPECT_ANY,
                                      CAIRN_DURABILITY_MEMORY, &res)) ==
               CAIRN_ELOG_FULL)
            ;
        if (rc != 0)
            abort();
    }
    return NULL;
}

static void follow_across_segments_and_ring(void **state)
{
    fixture_t fx;
    fx_init(&fx, state, CAIRN_SEGMENT_BYTES_MIN);
#ifdef CAIRN_SANITIZED
    const uint64_t n = 20000;
#else
    const uint64_t n = 200000;
#endif
    cairn_log_t *log = fx_open(&fx);
    writer_arg_t a = {log, n};
    pthread_t th;
    pthread_create(&th, NULL, writer_thread, &a);
    /* Start late and re-open now and then, so reads begin in segments and
     * cross into the ring while the writer runs. */
    uint64_t next = 1;
    char buf[256];
    while (next <= n) {
        cairn_read_filter_t f = {0};
        f.from_seq = next;
        cairn_log_iter_t *it;
        int rc = cairn_log_iter_open(log, &f, &it);
        if (rc == CAIRN_EEXPIRED)
            fail_msg("expired at %lu", (unsigned long)next);
        assert_int_equal(rc, 0);
        cairn_event_t ev;
        for (int k = 0; k < 5000 && next <= n; k++) {
            rc = cairn_log_iter_next(it, &ev);
            assert_true(rc >= 0);
            if (rc == 0) {
                sched_yield();
                continue;
            }
            assert_int_equal(ev.seq, next);
            size_t len;
            payload_for(next - 1, buf, &len);
            assert_int_equal(ev.payload_len, len);
            assert_memory_equal(ev.payload, buf, len);
            next++;
        }
        cairn_log_iter_close(it);
    }
    pthread_join(th, NULL);
    cairn_log_close(log);
    rm_rf(fx.dir);
}

#define TWIN(fn)                                                               \
    {#fn "_lockfree", fn, NULL, NULL, &ENHANCED},                              \
    {                                                                          \
#fn "_mutex", fn, NULL, NULL, &MUTEX                                   \
    }

static const struct CMUnitTest tests[] = {
    TWIN(roundtrip_and_reopen),
    TWIN(segments_roll_and_read_back),
    TWIN(retention_by_bytes),
    TWIN(compressed_round_trip),
    TWIN(thousands_of_streams_recovered),
    TWIN(idempotency_survives_restart),
    TWIN(follow_across_segments_and_ring),
    cmocka_unit_test(torn_tail_every_offset),
    cmocka_unit_test(flipped_bit_in_sealed_segment),
    cmocka_unit_test(flipped_bit_never_served),
    cmocka_unit_test(torn_batch_dropped_whole),
    cmocka_unit_test(enospc_on_write),
    cmocka_unit_test(edquot_on_write),
    cmocka_unit_test(eio_on_fsync),
    cmocka_unit_test(directory_is_locked),
    cmocka_unit_test(bad_storage_options),
};

CAIRN_TEST_MAIN(tests)
