/*
 * test_config.c — the configuration loader (src/server/config.c): defaults,
 * file < environment < flag precedence, every value type, each error path
 * and its message, the example config, and docs/CONFIG.md against the key
 * table.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "test.h"

#include "cairn/fsm.h"
#include "server/config.h"

/* ---- helpers ------------------------------------------------------------- */

#define MAX_ARGS 32

/* Load with argv = {"serve", args..., NULL-terminated}. */
static int load_args(cairn_config_t *cfg, char *err, size_t errlen, ...)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    argv[argc++] = "serve";
    va_list ap;
    va_start(ap, errlen);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    return cairn_config_load(argc, argv, cfg, err, errlen);
}

/* A temporary config file holding text; the caller unlinks and frees. */
static char *write_file(const char *text)
{
    static unsigned serial;
    char *path = malloc(64);
    assert_non_null(path);
    snprintf(path, 64, "/tmp/cairn-test-config-%d-%u.conf", (int)getpid(),
             serial++);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void drop_file(char *path)
{
    unlink(path);
    free(path);
}

/* Load a file's text (plus extra flags, NULL-terminated) and return the
 * status; err receives the message. */
static int load_text(const char *text, cairn_config_t *cfg, char *err,
                     size_t errlen)
{
    char *path = write_file(text);
    int rc = load_args(cfg, err, errlen, "--config", path, NULL);
    drop_file(path);
    return rc;
}

/* Expect load_text to fail with `code` and an error containing each of
 * the NULL-terminated fragments. */
static void expect_file_error(const char *text, int code, ...)
{
    cairn_config_t cfg;
    char err[512];
    int rc = load_text(text, &cfg, err, sizeof err);
    if (rc != code)
        fail_msg("expected %d, got %d (%s) for:\n%s", code, rc, err, text);
    va_list ap;
    va_start(ap, code);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
        if (!strstr(err, frag))
            fail_msg("error '%s' lacks '%s'", err, frag);
    va_end(ap);
    /* A failed load leaves nothing to free, and freeing again is safe. */
    assert_null(cfg.config_file);
    assert_null(cfg.listen);
    cairn_config_free(&cfg);
}

static void clear_env(void)
{
    static const char *const vars[] = {
        "CAIRN_SERVER_MAX_CONNECTIONS", "CAIRN_SERVER_LISTN",
        "CAIRN_AUTH_TOKEN",             "CAIRN_STORAGE_DURABILITY",
        "CAIRN_BREAKER_SUCCESS_THRESHOLD", "CAIRN_LIMITS_MAX_JSON_DEPTH",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

static int teardown_env(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

static void assert_defaults(const cairn_config_t *cfg)
{
    cairn_log_opts_t lo;
    cairn_log_opts_init(&lo);
    cairn_guard_opts_t go;
    cairn_guard_opts_init(&go);

    /* The table's defaults are the modules' own defaults. */
    assert_int_equal(cfg->log.enhanced_mode, lo.enhanced_mode);
    assert_int_equal(cfg->log.buffer_size_mb, lo.buffer_size_mb);
    assert_int_equal(cfg->log.max_endpoints, lo.max_endpoints);
    assert_int_equal(cfg->log.max_event_bytes, lo.max_event_bytes);
    assert_int_equal(cfg->log.max_batch_events, lo.max_batch_events);
    assert_int_equal(cfg->log.append_timeout_ms, lo.append_timeout_ms);
    assert_int_equal(cfg->log.idempotency_window, lo.idempotency_window);
    assert_int_equal(cfg->log.idle_evict_secs, lo.idle_evict_secs);
    assert_int_equal(cfg->log.breaker.failure_threshold,
                     lo.breaker.failure_threshold);
    assert_int_equal(cfg->log.breaker.failure_window_secs,
                     lo.breaker.failure_window_secs);
    assert_int_equal(cfg->log.breaker.recovery_timeout_secs,
                     lo.breaker.recovery_timeout_secs);
    assert_int_equal(cfg->log.breaker.half_open_max_requests,
                     lo.breaker.half_open_max_requests);
    assert_true(cfg->log.breaker.success_threshold ==
                lo.breaker.success_threshold);
    assert_int_equal(cfg->log.throttle.stream_rate, lo.throttle.stream_rate);
    assert_int_equal(cfg->log.throttle.stream_burst, lo.throttle.stream_burst);
    assert_int_equal(cfg->log.segment_bytes, lo.segment_bytes);
    assert_int_equal(cfg->log.retention_bytes, lo.retention_bytes);
    assert_int_equal(cfg->log.retention_age_secs, lo.retention_age_secs);
    assert_int_equal(cfg->log.compress_sealed, lo.compress_sealed);
    assert_int_equal(cfg->log.recovery_truncate, lo.recovery_truncate);
    assert_int_equal(cfg->log.sync_interval_ms, lo.sync_interval_ms);
    assert_int_equal(cfg->log.first_seq, lo.first_seq);

    assert_int_equal(cfg->guard.max_input_bytes, go.max_input_bytes);
    assert_int_equal(cfg->guard.max_decompressed_bytes,
                     go.max_decompressed_bytes);
    assert_int_equal(cfg->guard.max_compression_ratio,
                     go.max_compression_ratio);
    assert_int_equal(cfg->guard.max_decode_layers, go.max_decode_layers);
    assert_int_equal(cfg->guard.max_json_depth, go.max_json_depth);
    assert_int_equal(cfg->guard.max_json_string_bytes,
                     go.max_json_string_bytes);
    assert_int_equal(cfg->guard.max_json_members, go.max_json_members);
    assert_int_equal(cfg->guard.allow_duplicate_keys, go.allow_duplicate_keys);
    assert_int_equal(cfg->guard.allow_unsupported_encoding,
                     go.allow_unsupported_encoding);
    assert_null(cfg->guard.patterns_path); /* the built-in set */

    assert_string_equal(cfg->log.data_dir, "./cairn-data");
    assert_int_equal(cfg->durability, CAIRN_DURABILITY_SYNC);
    assert_int_equal(cfg->enabled, 1);
    assert_string_equal(cfg->listen, "127.0.0.1:7070");
    assert_int_equal(cfg->max_connections, 1024);
    assert_int_equal(cfg->max_header_bytes, 16384);
    assert_int_equal(cfg->max_body_bytes, 8u << 20);
    assert_int_equal(cfg->request_timeout_secs, 30);
    assert_int_equal(cfg->client_rate, 0);
    assert_int_equal(cfg->client_burst, 100);
    assert_int_equal(cfg->insecure, 0);
    assert_int_equal(cfg->metrics_provider, 0);
    assert_int_equal(cfg->snapshot_every, 1000);
    assert_int_equal(cfg->projection_cache, 10000);
    assert_int_equal(cfg->ntokens, 0);
    assert_int_equal(cfg->nfsms, 0);
}

/* ---- cases ---------------------------------------------------------------- */

static void defaults_match_the_modules(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[256];
    assert_int_equal(load_args(&cfg, err, sizeof err, NULL), 0);
    assert_null(cfg.config_file);
    assert_defaults(&cfg);
    cairn_config_free(&cfg);
    assert_null(cfg.listen);
    cairn_config_free(&cfg); /* twice is harmless */
}

static void file_then_env_then_flag(void **state)
{
    (void)state;
    clear_env();
    char *path = write_file("[server]\n"
                            "max_connections = 10\n"
                            "client_burst = 5\n"
                            "[storage]\n"
                            "durability = os\n");
    cairn_config_t cfg;
    char err[256];

    assert_int_equal(load_args(&cfg, err, sizeof err, "--config", path, NULL),
                     0);
    assert_string_equal(cfg.config_file, path);
    assert_int_equal(cfg.max_connections, 10);
    assert_int_equal(cfg.durability, CAIRN_DURABILITY_OS);
    cairn_config_free(&cfg);

    setenv("CAIRN_SERVER_MAX_CONNECTIONS", "20", 1);
    setenv("CAIRN_STORAGE_DURABILITY", "memory", 1);
    assert_int_equal(load_args(&cfg, err, sizeof err, "--config", path, NULL),
                     0);
    assert_int_equal(cfg.max_connections, 20);
    assert_int_equal(cfg.client_burst, 5); /* the file still counts */
    assert_int_equal(cfg.durability, CAIRN_DURABILITY_MEMORY);
    cairn_config_free(&cfg);

    assert_int_equal(load_args(&cfg, err, sizeof err, "--config", path,
                               "--server.max_connections=30",
                               "--storage.durability", "sync", NULL),
                     0);
    assert_int_equal(cfg.max_connections, 30);
    assert_int_equal(cfg.client_burst, 5);
    assert_int_equal(cfg.durability, CAIRN_DURABILITY_SYNC);
    cairn_config_free(&cfg);

    /* Flags win whatever their position relative to --config. */
    assert_int_equal(load_args(&cfg, err, sizeof err,
                               "--server.max_connections", "40", "--config",
                               path, NULL),
                     0);
    assert_int_equal(cfg.max_connections, 40);
    cairn_config_free(&cfg);
    drop_file(path);
}

static void every_value_type(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[256];
    int rc = load_text(
        "; a comment\n"
        "# another comment\n"
        "[event_processor]\n"
        "enabled = yes\n"
        "enhanced_mode = OFF ; mutex twins\n"
        "buffer_size_mb = 128\n"
        "max_event_bytes = 2MiB\n"
        "  max_batch_events = 500   # indented, '#' comment\n"
        "[storage]\n"
        "data_dir = \"/var/lib/cairn ; not a comment # nor this\"\n"
        "durability = OS\n"
        "segment_bytes = 1 GiB\n"
        "retention_bytes = 18446744073709551615\n"
        "compress_sealed = 1\n"
        "recovery = truncate\n"
        "[server]\n"
        "listen = \"[::1]:8080\"\n"
        "insecure = on\n"
        "max_header_bytes = 64KiB\n"
        "max_body_bytes = 67108864\n"
        "[limits]\n"
        "max_json_depth = 16\n"
        "max_decode_layers = 0\n"
        "[guard]\n"
        "patterns = none\n"
        "allow_duplicate_keys = true\n"
        "[breaker]\n"
        "success_threshold = 0.5\n"
        "[throttle]\n"
        "stream_rate = 1000\n"
        "stream_burst = 10\n"
        "[metrics]\n"
        "provider = standard\n"
        "[projection]\n"
        "snapshot_every = 0\n"
        "cache = 5\n",
        &cfg, err, sizeof err);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.enabled, 1);
    assert_int_equal(cfg.log.enhanced_mode, 0);
    assert_int_equal(cfg.log.buffer_size_mb, 128);
    assert_int_equal(cfg.log.max_event_bytes, 2u << 20);
    assert_int_equal(cfg.log.max_batch_events, 500);
    assert_string_equal(cfg.log.data_dir,
                        "/var/lib/cairn ; not a comment # nor this");
    assert_int_equal(cfg.durability, CAIRN_DURABILITY_OS);
    assert_int_equal(cfg.log.segment_bytes, UINT64_C(1) << 30);
    assert_true(cfg.log.retention_bytes == UINT64_MAX);
    assert_int_equal(cfg.log.compress_sealed, 1);
    assert_int_equal(cfg.log.recovery_truncate, 1);
    assert_string_equal(cfg.listen, "[::1]:8080");
    assert_int_equal(cfg.insecure, 1);
    assert_int_equal(cfg.max_header_bytes, 65536);
    assert_int_equal(cfg.max_body_bytes, 64u << 20);
    assert_int_equal(cfg.guard.max_json_depth, 16);
    assert_int_equal(cfg.guard.max_decode_layers, 0);
    assert_string_equal(cfg.guard.patterns_path, CAIRN_GUARD_NO_PATTERNS);
    assert_int_equal(cfg.guard.allow_duplicate_keys, 1);
    assert_true(cfg.log.breaker.success_threshold == 0.5);
    assert_int_equal(cfg.log.throttle.stream_rate, 1000);
    assert_int_equal(cfg.log.throttle.stream_burst, 10);
    assert_int_equal(cfg.metrics_provider, 2);
    assert_int_equal(cfg.snapshot_every, 0);
    assert_int_equal(cfg.projection_cache, 5);
    cairn_config_free(&cfg);

    /* Empty data_dir: in memory only, which requires memory durability;
     * a path for patterns is kept as written. */
    rc = load_text("[storage]\ndata_dir = \"\"\ndurability = memory\n"
                   "[guard]\npatterns = /etc/cairn/patterns\n",
                   &cfg, err, sizeof err);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_null(cfg.log.data_dir);
    assert_string_equal(cfg.guard.patterns_path, "/etc/cairn/patterns");
    cairn_config_free(&cfg);
}

static void flags_and_shortcuts(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[256];
    int rc = load_args(&cfg, err, sizeof err, "--data", "/tmp/d", "--listen",
                       "0.0.0.0:9000", "--insecure", "--guard.patterns=",
                       "--event_processor.enhanced_mode", "false",
                       "--storage.compress_sealed", "--limits.max_json_depth",
                       "\"9\"", "--breaker.success_threshold=1", NULL);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_string_equal(cfg.log.data_dir, "/tmp/d");
    assert_string_equal(cfg.listen, "0.0.0.0:9000");
    assert_int_equal(cfg.insecure, 1);
    assert_null(cfg.guard.patterns_path);
    assert_int_equal(cfg.log.enhanced_mode, 0);
    assert_int_equal(cfg.log.compress_sealed, 1);
    assert_int_equal(cfg.guard.max_json_depth, 9);
    assert_true(cfg.log.breaker.success_threshold == 1.0);
    cairn_config_free(&cfg);

    rc = load_args(&cfg, err, sizeof err, "--insecure=false", "--data=/x",
                   "--listen=localhost:1", NULL);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.insecure, 0);
    assert_string_equal(cfg.log.data_dir, "/x");
    assert_string_equal(cfg.listen, "localhost:1");
    cairn_config_free(&cfg);
}

static void tokens_and_fsms(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[256];
    char *path = write_file(
        "[auth]\n"
        "token = ops:admin:0123456789abcdef0123\n"
        "token = \"reader:read:fedcba9876543210:with:colons\"\n"
        "\n"
        "[fsm.order]\n"
        "streams = order:*\n"
        "initial = NEW\n"
        "transition = NEW + PAID -> DONE\n"
        "[fsm.position]\n"
        "streams = position:*\n"
        "initial = CREATED\n"
        "transition = CREATED + POSITION_OPENED -> MONITORING\n");
    int rc = load_args(&cfg, err, sizeof err, "--config", path, NULL);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.ntokens, 2);
    assert_string_equal(cfg.tokens[0].name, "ops");
    assert_int_equal(cfg.tokens[0].role, CAIRN_ROLE_ADMIN);
    assert_string_equal(cfg.tokens[0].secret, "0123456789abcdef0123");
    assert_int_equal(cfg.tokens[0].secret_len, 20);
    assert_string_equal(cfg.tokens[1].name, "reader");
    assert_int_equal(cfg.tokens[1].role, CAIRN_ROLE_READ);
    assert_string_equal(cfg.tokens[1].secret, "fedcba9876543210:with:colons");
    assert_string_equal(cairn_config_role_name(cfg.tokens[1].role), "read");

    assert_int_equal(cfg.nfsms, 2);
    assert_string_equal(cfg.fsms[0].name, "order");
    assert_string_equal(cfg.fsms[0].streams, "order:");
    assert_int_equal(cfg.fsms[0].nlines, 2);
    assert_string_equal(cfg.fsms[0].lines[0].key, "initial");
    assert_string_equal(cfg.fsms[0].lines[0].value, "NEW");
    assert_int_equal(cfg.fsms[0].lines[0].line, 7);
    assert_string_equal(cfg.fsms[0].lines[1].value, "NEW + PAID -> DONE");
    assert_int_equal(cfg.fsms[0].lines[1].line, 8);
    assert_string_equal(cfg.fsms[1].streams, "position:");

    cairn_fsm_def_t *def = NULL;
    assert_int_equal(cairn_config_fsm_build(&cfg.fsms[1], &def, err,
                                            sizeof err),
                     0);
    assert_non_null(def);
    uint32_t next = 99;
    assert_int_equal(cairn_fsm_def_next(def, 0, "POSITION_OPENED", 15, &next),
                     0);
    assert_int_equal(next, 1);
    cairn_fsm_def_free(def);
    cairn_config_free(&cfg);

    /* The environment's tokens replace the file's; flags replace both. */
    setenv("CAIRN_AUTH_TOKEN",
           "a:append:aaaaaaaaaaaaaaaa  b:read:bbbbbbbbbbbbbbbb", 1);
    rc = load_args(&cfg, err, sizeof err, "--config", path, NULL);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.ntokens, 2);
    assert_string_equal(cfg.tokens[0].name, "a");
    assert_int_equal(cfg.tokens[0].role, CAIRN_ROLE_APPEND);
    assert_string_equal(cfg.tokens[1].name, "b");
    cairn_config_free(&cfg);
    rc = load_args(&cfg, err, sizeof err, "--config", path, "--auth.token",
                   "c:admin:cccccccccccccccc", NULL);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.ntokens, 1);
    assert_string_equal(cfg.tokens[0].name, "c");
    cairn_config_free(&cfg);
    drop_file(path);
}

static void enabled_false_turns_breaker_and_throttle_off(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[256];
    int rc = load_text("[event_processor]\nenabled = false\n"
                       "[breaker]\nfailure_threshold = 9\n"
                       "[throttle]\nstream_rate = 50\n",
                       &cfg, err, sizeof err);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.enabled, 0);
    assert_int_equal(cfg.log.breaker.failure_threshold, 0);
    assert_int_equal(cfg.log.throttle.stream_rate, 0);
    cairn_config_free(&cfg);

    rc = load_text("[breaker]\nfailure_threshold = 9\n", &cfg, err,
                   sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.log.breaker.failure_threshold, 9);
    cairn_config_free(&cfg);
}

static void error_unknown_key(void **state)
{
    (void)state;
    clear_env();
    expect_file_error("[server]\nlisten = 127.0.0.1:1\nlisen = x\n",
                      CAIRN_CONFIG_ERROR, ":3: ", "server.lisen: unknown key",
                      NULL);
    expect_file_error("[server]\n[serv]\n", CAIRN_CONFIG_ERROR, ":2: ",
                      "[serv]: unknown section", NULL);
    expect_file_error("\xEF\xBB\xBF[serv]\n", CAIRN_CONFIG_ERROR, ":1: ",
                      "[serv]: unknown section", NULL);
    expect_file_error("max_connections = 3\n", CAIRN_CONFIG_ERROR, ":1: ",
                      "max_connections: a key outside any [section]", NULL);
    expect_file_error("[auth]\nsecret = x\n", CAIRN_CONFIG_ERROR, ":2: ",
                      "auth.secret: unknown key", NULL);
    expect_file_error("[server]\nthis line has no equals sign\n",
                      CAIRN_CONFIG_ERROR, ":2: ",
                      "expected `[section]` or `key = value`", NULL);

    /* A variable of a known section that names no key is a typo. */
    cairn_config_t cfg;
    char err[256];
    setenv("CAIRN_SERVER_LISTN", "x", 1);
    assert_int_equal(load_args(&cfg, err, sizeof err, NULL),
                     CAIRN_CONFIG_ERROR);
    assert_non_null(strstr(err, "CAIRN_SERVER_LISTN: no such key in [server]"));
    unsetenv("CAIRN_SERVER_LISTN");
}

static void error_bad_value(void **state)
{
    (void)state;
    clear_env();
    expect_file_error("[server]\nmax_connections = lots\n",
                      CAIRN_CONFIG_ERROR,
                      "server.max_connections: not a number: 'lots'", NULL);
    expect_file_error("[server]\nmax_connections = -1\n", CAIRN_CONFIG_ERROR,
                      "server.max_connections: not a number", NULL);
    expect_file_error("[server]\ninsecure = maybe\n", CAIRN_CONFIG_ERROR,
                      "server.insecure: not a boolean: 'maybe'", NULL);
    expect_file_error("[storage]\ndurability = fast\n", CAIRN_CONFIG_ERROR,
                      "storage.durability: not one of memory|os|sync: 'fast'",
                      NULL);
    expect_file_error("[server]\nlisten = 127.0.0.1\n", CAIRN_CONFIG_ERROR,
                      "server.listen: expected HOST:PORT", NULL);
    expect_file_error("[server]\nlisten = 127.0.0.1:0\n", CAIRN_CONFIG_ERROR,
                      "server.listen: the port must be 1 .. 65535", NULL);
    expect_file_error("[limits]\nmax_input_bytes = 1 MB\n", CAIRN_CONFIG_ERROR,
                      "limits.max_input_bytes: not a size: '1 MB'", NULL);
    expect_file_error("[breaker]\nsuccess_threshold = half\n",
                      CAIRN_CONFIG_ERROR,
                      "breaker.success_threshold: not a number", NULL);
    expect_file_error("[storage]\ndata_dir = \"unterminated\n",
                      CAIRN_CONFIG_ERROR,
                      "storage.data_dir: unterminated quoted string", NULL);
    expect_file_error("[storage]\ndata_dir = \"a\" b\n", CAIRN_CONFIG_ERROR,
                      "storage.data_dir: text after the closing quote", NULL);
    expect_file_error("[server]\nlisten = a:1\nlisten = b:2\n",
                      CAIRN_CONFIG_ERROR, ":3: ",
                      "server.listen: set twice (first on line 2)", NULL);
    expect_file_error("[storage]\ndata_dir =\n", CAIRN_CONFIG_ERROR,
                      "storage.durability: 'sync' needs storage.data_dir",
                      NULL);

    cairn_config_t cfg;
    char err[256];
    setenv("CAIRN_LIMITS_MAX_JSON_DEPTH", "deep", 1);
    assert_int_equal(load_args(&cfg, err, sizeof err, NULL),
                     CAIRN_CONFIG_ERROR);
    assert_string_equal(err, "CAIRN_LIMITS_MAX_JSON_DEPTH: limits.max_json_"
                             "depth: not a number: 'deep'");
    unsetenv("CAIRN_LIMITS_MAX_JSON_DEPTH");
    assert_int_equal(load_args(&cfg, err, sizeof err,
                               "--server.client_rate=fast", NULL),
                     CAIRN_CONFIG_ERROR);
    assert_string_equal(err, "server.client_rate: not a number: 'fast'");
}

static void error_out_of_range(void **state)
{
    (void)state;
    clear_env();
    expect_file_error("[server]\nmax_connections = 70000\n",
                      CAIRN_CONFIG_ERROR,
                      "server.max_connections: out of range: 70000 (allowed "
                      "1 .. 65536)",
                      NULL);
    expect_file_error("[server]\nmax_body_bytes = 65MiB\n", CAIRN_CONFIG_ERROR,
                      "server.max_body_bytes: out of range: 65MiB (allowed "
                      "1 .. 64 MiB)",
                      NULL);
    expect_file_error("[event_processor]\nbuffer_size_mb = 0\n",
                      CAIRN_CONFIG_ERROR,
                      "event_processor.buffer_size_mb: out of range", NULL);
    expect_file_error("[breaker]\nfailure_threshold = 256\n",
                      CAIRN_CONFIG_ERROR,
                      "breaker.failure_threshold: out of range", NULL);
    expect_file_error("[breaker]\nsuccess_threshold = 0\n", CAIRN_CONFIG_ERROR,
                      "breaker.success_threshold: out of range: 0 (allowed "
                      "(0 .. 1])",
                      NULL);
    expect_file_error("[breaker]\nsuccess_threshold = 1.01\n",
                      CAIRN_CONFIG_ERROR,
                      "breaker.success_threshold: out of range", NULL);
    /* 2^64 and a suffix that overflows are out of range, not wrapped. */
    expect_file_error("[storage]\nretention_bytes = 18446744073709551616\n",
                      CAIRN_CONFIG_ERROR, "storage.retention_bytes: out of "
                                          "range",
                      NULL);
    expect_file_error("[storage]\nretention_bytes = 17179869184 GiB\n",
                      CAIRN_CONFIG_ERROR, "storage.retention_bytes: out of "
                                          "range",
                      NULL);
    /* A u32 field never keeps the low bits of a larger number. */
    expect_file_error("[limits]\nmax_json_depth = 4294967297\n",
                      CAIRN_CONFIG_ERROR, "limits.max_json_depth: out of range",
                      NULL);
}

static void error_bad_token(void **state)
{
    (void)state;
    clear_env();
    expect_file_error("[auth]\ntoken = justasecretvalue123\n",
                      CAIRN_CONFIG_ERROR, ":2: ",
                      "auth.token: expected NAME:ROLE:SECRET", NULL);
    expect_file_error("[auth]\ntoken = ops:root:0123456789abcdef\n",
                      CAIRN_CONFIG_ERROR, ":2: ",
                      "auth.token: token 'ops': the role must be read, append "
                      "or admin",
                      NULL);
    expect_file_error("[auth]\ntoken = ops:admin:short\n", CAIRN_CONFIG_ERROR,
                      "auth.token: token 'ops': the secret must be 16 .. 256 "
                      "bytes",
                      NULL);
    expect_file_error("[auth]\ntoken = :admin:0123456789abcdef\n",
                      CAIRN_CONFIG_ERROR, "auth.token: the name must be",
                      NULL);
    expect_file_error("[auth]\ntoken = a b:admin:0123456789abcdef\n",
                      CAIRN_CONFIG_ERROR, "auth.token: the name 'a b'", NULL);
    expect_file_error("[auth]\ntoken = a:read:0123456789abcdef\n"
                      "token = a:admin:fedcba9876543210\n",
                      CAIRN_CONFIG_ERROR, ":3: ",
                      "auth.token: token 'a' is defined twice", NULL);
    expect_file_error("[auth]\ntoken = a:read:0123456789abcdef\n"
                      "token = b:admin:0123456789abcdef\n",
                      CAIRN_CONFIG_ERROR,
                      "tokens 'a' and 'b' have the same secret", NULL);

    /* The secret never appears in a message. */
    cairn_config_t cfg;
    char err[256];
    int rc = load_text("[auth]\ntoken = ops:admin:tooshortsecret\n", &cfg,
                       err, sizeof err);
    assert_int_equal(rc, CAIRN_CONFIG_ERROR);
    assert_null(strstr(err, "tooshortsecret"));
    rc = load_text("[auth]\ntoken = ops:superuser:0123456789abcdefXYZ\n", &cfg,
                   err, sizeof err);
    assert_int_equal(rc, CAIRN_CONFIG_ERROR);
    assert_null(strstr(err, "XYZ"));
    rc = load_args(&cfg, err, sizeof err, "--auth.token", "x:read:bad", NULL);
    assert_int_equal(rc, CAIRN_CONFIG_ERROR);
    assert_string_equal(err, "auth.token: token 'x': the secret must be 16 .. "
                             "256 bytes");
}

static void error_bad_fsm_line(void **state)
{
    (void)state;
    clear_env();
    /* The builder's complaint, with the file line of the transition. */
    expect_file_error("[fsm.position]\n"
                      "streams = position:*\n"
                      "initial = CREATED\n"
                      "transition = CREATED + POSITION_OPENED MONITORING\n",
                      CAIRN_CONFIG_ERROR, ":4: fsm.position: ", "no '->'",
                      NULL);
    expect_file_error("[fsm.position]\n"
                      "streams = position:*\n"
                      "initial = CREATED\n"
                      "transition = CREATED + A -> B\n"
                      "transition = CREATED + A -> C\n",
                      CAIRN_CONFIG_ERROR, ":5: fsm.position: ",
                      "duplicate transition", "line 4", NULL);
    expect_file_error("[fsm.position]\nstreams = position:*\ncolour = red\n",
                      CAIRN_CONFIG_ERROR, ":3: fsm.position: ", NULL);
    expect_file_error("[fsm.position]\n"
                      "initial = CREATED\n"
                      "transition = CREATED + A -> B\n",
                      CAIRN_CONFIG_ERROR,
                      "fsm.position: no `streams = PREFIX*` line", NULL);
    expect_file_error("[fsm.position]\nstreams = position\n",
                      CAIRN_CONFIG_ERROR, ":2: fsm.position.streams: "
                                          "expected PREFIX*",
                      NULL);
    expect_file_error("[fsm.a]\nstreams = pos*\ninitial = X\n"
                      "transition = X + T -> Y\n"
                      "[fsm.b]\nstreams = position:*\ninitial = X\n"
                      "transition = X + T -> Y\n",
                      CAIRN_CONFIG_ERROR, "fsm.b: streams 'position:*' "
                                          "overlap fsm.a's 'pos*'",
                      NULL);
    expect_file_error("[fsm.position]\nstreams = position:*\n",
                      CAIRN_CONFIG_ERROR, "fsm.position: no initial state",
                      NULL);
}

static void error_unknown_flag(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[256];
    assert_int_equal(load_args(&cfg, err, sizeof err, "--verbose", NULL),
                     CAIRN_CONFIG_USAGE);
    assert_string_equal(err, "unknown option '--verbose'");
    assert_int_equal(load_args(&cfg, err, sizeof err, "--server.lisen=x",
                               NULL),
                     CAIRN_CONFIG_USAGE);
    assert_string_equal(err, "unknown option '--server.lisen=x' (no such key)");
    assert_int_equal(load_args(&cfg, err, sizeof err, "--listen", NULL),
                     CAIRN_CONFIG_USAGE);
    assert_string_equal(err, "option '--listen' needs a value");
    assert_int_equal(load_args(&cfg, err, sizeof err, "extra", NULL),
                     CAIRN_CONFIG_USAGE);
    assert_string_equal(err, "unexpected argument 'extra'");
    assert_int_equal(load_args(&cfg, err, sizeof err, "--fsm.x.initial=A",
                               NULL),
                     CAIRN_CONFIG_USAGE);
    /* A usage error wins over a bad value elsewhere on the line. */
    assert_int_equal(load_args(&cfg, err, sizeof err,
                               "--server.max_connections=lots", "--nope",
                               NULL),
                     CAIRN_CONFIG_USAGE);
    assert_string_equal(err, "unknown option '--nope'");
}

static void file_errors(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[512];
    assert_int_equal(load_args(&cfg, err, sizeof err, "--config",
                               "/nonexistent/cairn.conf", NULL),
                     CAIRN_CONFIG_ERROR);
    assert_string_equal(err, "/nonexistent/cairn.conf: cannot open: No such "
                             "file or directory");

    /* A line longer than libinih's buffer is refused, not cut. */
    char text[600];
    snprintf(text, sizeof text, "[storage]\ndata_dir = /%0400d\n", 0);
    expect_file_error(text, CAIRN_CONFIG_ERROR, ":2: line too long", NULL);
    /* One that fits is kept whole. */
    char dir[160];
    memset(dir, 'd', sizeof dir - 1);
    dir[sizeof dir - 1] = '\0';
    snprintf(text, sizeof text, "[storage]\ndata_dir = %s\n", dir);
    int rc = load_text(text, &cfg, err, sizeof err);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_string_equal(cfg.log.data_dir, dir);
    cairn_config_free(&cfg);

    /* CRLF line ends and a byte-order mark are fine. */
    rc = load_text("\xEF\xBB\xBF[server]\r\nmax_connections = 12\r\n", &cfg,
                   err, sizeof err);
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.max_connections, 12);
    cairn_config_free(&cfg);
}

static void example_config_loads(void **state)
{
    (void)state;
    clear_env();
    cairn_config_t cfg;
    char err[512];
    int rc = load_args(&cfg, err, sizeof err, "--config",
                       CAIRN_SOURCE_DIR "/config/cairn.conf.example", NULL);
    if (rc)
        fail_msg("example config: %s", err);
    /* Every value in it is the default; only the FSM is extra. */
    assert_int_equal(cfg.nfsms, 1);
    assert_string_equal(cfg.fsms[0].name, "position");
    assert_string_equal(cfg.fsms[0].streams, "position:");
    assert_true(cfg.fsms[0].nlines >= 10);
    cairn_fsm_def_t *def = NULL;
    assert_int_equal(cairn_config_fsm_build(&cfg.fsms[0], &def, err,
                                            sizeof err),
                     0);
    cairn_fsm_def_free(def);
    cfg.nfsms = 0; /* compare the rest with the defaults */
    cairn_config_fsm_t keep = cfg.fsms[0];
    assert_defaults(&cfg);
    cfg.fsms[0] = keep;
    cfg.nfsms = 1;
    cairn_config_free(&cfg);
}

/* Every row of the generated key table appears in docs/CONFIG.md, and the
 * whole table appears there verbatim. */
static void docs_list_every_key_with_its_default(void **state)
{
    (void)state;
    char *table = NULL;
    size_t table_len = 0;
    FILE *mem = open_memstream(&table, &table_len);
    assert_non_null(mem);
    cairn_config_write_docs(mem);
    fclose(mem);

    FILE *f = fopen(CAIRN_SOURCE_DIR "/docs/CONFIG.md", "r");
    assert_non_null(f);
    char *doc = malloc(1 << 20);
    assert_non_null(doc);
    size_t n = fread(doc, 1, (1 << 20) - 1, f);
    fclose(f);
    doc[n] = '\0';

    unsigned rows = 0;
    for (char *line = table; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (!strncmp(line, "| `", 3)) {
            rows++;
            if (!strstr(doc, line))
                fail_msg("docs/CONFIG.md lacks the row (regenerate the "
                         "table with cairn_config_write_docs):\n%s",
                         line);
        }
        *nl = '\n';
        line = nl + 1;
    }
    assert_true(rows >= 45);
    assert_non_null(strstr(doc, table));
    /* Spot-check that defaults are in the rows. */
    assert_non_null(strstr(table, "| `server.listen` | HOST:PORT | "
                                  "`\"127.0.0.1:7070\"` |"));
    assert_non_null(strstr(table, "| `server.max_body_bytes` | size | "
                                  "`8 MiB` | 1 .. 64 MiB |"));
    free(doc);
    free(table);
}

static const struct CMUnitTest cases[] = {
    cmocka_unit_test_teardown(defaults_match_the_modules, teardown_env),
    cmocka_unit_test_teardown(file_then_env_then_flag, teardown_env),
    cmocka_unit_test_teardown(every_value_type, teardown_env),
    cmocka_unit_test_teardown(flags_and_shortcuts, teardown_env),
    cmocka_unit_test_teardown(tokens_and_fsms, teardown_env),
    cmocka_unit_test_teardown(enabled_false_turns_breaker_and_throttle_off,
                              teardown_env),
    cmocka_unit_test_teardown(error_unknown_key, teardown_env),
    cmocka_unit_test_teardown(error_bad_value, teardown_env),
    cmocka_unit_test_teardown(error_out_of_range, teardown_env),
    cmocka_unit_test_teardown(error_bad_token, teardown_env),
    cmocka_unit_test_teardown(error_bad_fsm_line, teardown_env),
    cmocka_unit_test_teardown(error_unknown_flag, teardown_env),
    cmocka_unit_test_teardown(file_errors, teardown_env),
    cmocka_unit_test_teardown(example_config_loads, teardown_env),
    cmocka_unit_test(docs_list_every_key_with_its_default),
};

CAIRN_TEST_MAIN(cases)
