/*
 * test_cli.c — the `cairn` command line as users run it: exit codes and
 * messages of `cairn verify`, `cairn version`, usage errors.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#include "cairn/log.h"

static int run(const char *args, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", CAIRN_BIN, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void make_log(const char *dir)
{
    cairn_log_opts_t o;
    cairn_log_opts_init(&o);
    o.buffer_size_mb = 1;
    o.data_dir = dir;
    o.segment_bytes = CAIRN_SEGMENT_BYTES_MIN;
    cairn_log_t *log;
    assert_int_equal(cairn_log_open(&o, &log), 0);
    for (int i = 0; i < 1500; i++) {
        cairn_event_in_t e = {.type = "t", .type_len = 1,
                              .payload = "some payload bytes here",
                              .payload_len = 23};
        cairn_append_result_t res;
        assert_int_equal(cairn_log_append(log, i % 2 ? "a" : "b", 1, &e, 1,
                                          CAIRN_EXPECT_ANY,
                                          CAIRN_DURABILITY_OS, &res),
                         0);
    }
    cairn_log_close(log);
}

static void verify_exit_codes(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-cli-XXXXXX", out[4096], args[256];
    assert_non_null(mkdtemp(dir));
    make_log(dir);
    snprintf(args, sizeof args, "verify %s", dir);
    assert_int_equal(run(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "1500 records"));
    /* Flip one byte in the first segment's third record. */
    char seg[512];
    snprintf(seg, sizeof seg, "%s/%020d.seg", dir, 1);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, 64 + 2 * 88 + 50), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 64 + 2 * 88 + 50), 1);
    close(fd);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "cairn: verify: "));
    assert_non_null(strstr(out, seg));
    assert_non_null(strstr(out, "offset 240"));
    assert_int_equal(run("verify", out, sizeof out), 2);
    assert_int_equal(run("verify /nonexistent/dir", out, sizeof out), 2);
    assert_int_equal(run("verify --help", out, sizeof out), 0);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

static void version_and_usage(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run("version", out, sizeof out), 0);
    assert_non_null(strstr(out, CAIRN_VERSION_STRING));
    assert_int_equal(run("", out, sizeof out), 2);
    assert_int_equal(run("no-such-command", out, sizeof out), 2);
    assert_non_null(strstr(out, "cairn: no-such-command: "));
    assert_int_equal(run("bench --bogus", out, sizeof out), 2);
    assert_int_equal(run("--help", out, sizeof out), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(verify_exit_codes),
    cmocka_unit_test(version_and_usage),
};

CAIRN_TEST_MAIN(tests)
