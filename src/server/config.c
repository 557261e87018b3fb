/*
 * config.c — cairn's configuration: one key table drives the INI file
 * (libinih), the CAIRN_<SECTION>_<KEY> environment variables, the
 * --<section>.<key> flags and the Markdown key list of docs/CONFIG.md.
 *
 * DESIGN
 *
 * Each row of `keys[]` names a section and key, its type, its default, its
 * range and where the value lands in cairn_config_t (offset and size of the
 * field).  Loading applies the defaults, then the file, then the
 * environment, then the flags; each layer parses values with the same
 * function, so a value means the same thing wherever it is written.  Three
 * things are not rows because they are not one scalar: `[auth] token`
 * (repeatable; a higher layer's tokens replace a lower layer's),
 * `[fsm.NAME]` sections (file only; every line is kept and the section is
 * built once with cairn_fsm_builder_* to catch errors at startup), and the
 * shortcuts --config, --data, --listen, --insecure.
 *
 * libinih frames the file (sections, keys, comments) but values are taken
 * from the raw line this file hands it through its own reader: inih would
 * cut a quoted string at " ;", does not know '#' comments after a value,
 * and takes indented lines as continuations.  The reader strips leading
 * whitespace (so indentation never means continuation), counts lines (the
 * Debian build has no line-number handler) and refuses lines longer than
 * inih's fixed line buffer instead of letting inih truncate them.
 *
 * Errors: the first one wins and names the key ("server.listen: ...");
 * from a file it is prefixed by FILE:LINE, from the environment by the
 * variable.  A secret is never copied into a message.
 */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "cairn/cairn.h"
#include "cairn/fsm.h"
#include "cairn/limits.h"

extern char **environ;

enum key_type { KT_BOOL, KT_U32, KT_U64, KT_DOUBLE, KT_STRING, KT_ENUM };

#define KF_SIZE 0x1u       /* integer with KiB/MiB/GiB/TiB suffixes */
#define KF_MIN_EXCL 0x2u   /* double: the minimum itself is not allowed */
#define KF_EMPTY_NULL 0x4u /* string: "" stores NULL */
#define KF_NONE_EMPTY 0x8u /* string: "none" stores "" */
#define KF_HOSTPORT 0x10u  /* string: HOST:PORT */

struct choice {
    const char *name;
    int value;
};

struct config_key {
    const char *section;
    const char *name;
    enum key_type type;
    unsigned flags;
    size_t offset;
    size_t size;
    uint64_t def_u; /* bool, u32, u64 */
    double def_d;
    const char *def_s; /* string, enum (the choice name) */
    uint64_t min, max;
    double dmin, dmax;
    const struct choice *choices; /* enum; ends with {NULL, 0} */
    const char *doc;
};

#define FIELD(f)                                                               \
    .offset = offsetof(cairn_config_t, f),                                     \
    .size = sizeof(((cairn_config_t *)0)->f)

#define BOOL(sec, key, f, def, text)                                           \
    {.section = sec, .name = key, .type = KT_BOOL, FIELD(f), .def_u = def,     \
     .max = 1, .doc = text}
#define U32(sec, key, f, def, lo, hi, fl, text)                                \
    {.section = sec, .name = key, .type = KT_U32, .flags = fl, FIELD(f),       \
     .def_u = def, .min = lo, .max = hi, .doc = text}
#define U64(sec, key, f, def, lo, hi, fl, text)                                \
    {.section = sec, .name = key, .type = KT_U64, .flags = fl, FIELD(f),       \
     .def_u = def, .min = lo, .max = hi, .doc = text}
#define DBL(sec, key, f, def, lo, hi, fl, text)                                \
    {.section = sec, .name = key, .type = KT_DOUBLE, .flags = fl, FIELD(f),    \
     .def_d = def, .dmin = lo, .dmax = hi, .doc = text}
#define STR(sec, key, f, def, fl, text)                                        \
    {.section = sec, .name = key, .type = KT_STRING, .flags = fl, FIELD(f),    \
     .def_s = def, .doc = text}
#define ENUM(sec, key, f, def, ch, text)                                       \
    {.section = sec, .name = key, .type = KT_ENUM, FIELD(f), .def_s = def,     \
     .choices = ch, .doc = text}

static const struct choice durability_choices[] = {
    {"memory", CAIRN_DURABILITY_MEMORY},
    {"os", CAIRN_DURABILITY_OS},
    {"sync", CAIRN_DURABILITY_SYNC},
    {NULL, 0},
};
static const struct choice recovery_choices[] = {
    {"strict", 0},
    {"truncate", 1},
    {NULL, 0},
};
static const struct choice provider_choices[] = {
    {"auto", 0},
    {"seqlock", 1},
    {"standard", 2},
    {NULL, 0},
};

static const struct config_key keys[] = {
    /* [event_processor] */
    BOOL("event_processor", "enabled", enabled, 1,
         "per-stream circuit breakers and throttles; `false` turns both off "
         "(as `breaker.failure_threshold = 0` and `throttle.stream_rate = 0`)"),
    BOOL("event_processor", "enhanced_mode", log.enhanced_mode, 1,
         "lock-free implementations (`true`) or their mutex twins (`false`)"),
    U32("event_processor", "buffer_size_mb", log.buffer_size_mb,
        CAIRN_BUFFER_SIZE_MB_DEFAULT, 1, CAIRN_BUFFER_SIZE_MB_CAP, 0,
        "in-memory ring size in MiB, rounded up to a power of two"),
    U32("event_processor", "max_endpoints", log.max_endpoints,
        CAIRN_MAX_ENDPOINTS_DEFAULT, 1, CAIRN_MAX_ENDPOINTS_CAP, 0,
        "distinct streams tracked in the stream table"),
    U32("event_processor", "idle_evict_secs", log.idle_evict_secs,
        CAIRN_IDLE_EVICT_SECS_DEFAULT, 0, CAIRN_IDLE_EVICT_SECS_CAP, 0,
        "a stream idle this long may be evicted when the table is full; "
        "0 never evicts"),
    U32("event_processor", "append_timeout_ms", log.append_timeout_ms,
        CAIRN_APPEND_TIMEOUT_MS_DEFAULT, 0, CAIRN_APPEND_TIMEOUT_MS_CAP, 0,
        "how long an append waits for ring space before failing (503)"),
    U32("event_processor", "idempotency_window", log.idempotency_window,
        CAIRN_IDEMPOTENCY_WINDOW_DEFAULT, 1, CAIRN_IDEMPOTENCY_WINDOW_CAP, 0,
        "idempotency ids remembered (the most recent win)"),
    U32("event_processor", "max_event_bytes", log.max_event_bytes,
        CAIRN_MAX_EVENT_BYTES_DEFAULT, 1, CAIRN_MAX_EVENT_BYTES_CAP, KF_SIZE,
        "largest payload of one event"),
    U32("event_processor", "max_batch_events", log.max_batch_events,
        CAIRN_MAX_BATCH_EVENTS_DEFAULT, 1, CAIRN_MAX_BATCH_EVENTS_CAP, 0,
        "events in one append (one request)"),

    /* [storage] */
    STR("storage", "data_dir", log.data_dir, "./cairn-data", KF_EMPTY_NULL,
        "directory of the durable segments; empty keeps the log in memory "
        "only (then `durability` must be `memory`)"),
    ENUM("storage", "durability", durability, "sync", durability_choices,
         "what an append waits for when the request does not say "
         "(`Cairn-Durability`)"),
    U64("storage", "segment_bytes", log.segment_bytes,
        CAIRN_SEGMENT_BYTES_DEFAULT, CAIRN_SEGMENT_BYTES_MIN,
        CAIRN_SEGMENT_BYTES_CAP, KF_SIZE, "segment roll size"),
    U64("storage", "retention_bytes", log.retention_bytes, 0, 0, UINT64_MAX,
        KF_SIZE, "sealed segment bytes kept (oldest removed first); 0 = no "
        "limit"),
    U64("storage", "retention_age_secs", log.retention_age_secs, 0, 0,
        UINT64_MAX, 0, "sealed segments older than this are removed; 0 = "
        "keep"),
    BOOL("storage", "compress_sealed", log.compress_sealed, 0,
         "zstd-compress sealed segments"),
    ENUM("storage", "recovery", log.recovery_truncate, "strict",
         recovery_choices,
         "damage inside a sealed segment: `strict` refuses to start, "
         "`truncate` cuts the log there (a torn tail is always truncated)"),
    U32("storage", "sync_interval_ms", log.sync_interval_ms,
        CAIRN_SYNC_INTERVAL_MS_DEFAULT, 1, CAIRN_SYNC_INTERVAL_MS_CAP, 0,
        "longest a `memory`/`os` append stays unsynced"),

    /* [server] */
    STR("server", "listen", listen, "127.0.0.1:7070", KF_HOSTPORT,
        "address to listen on, `HOST:PORT` (`[::1]:7070` for IPv6); a "
        "non-loopback address needs `[auth]` tokens or `insecure`"),
    U32("server", "max_connections", max_connections,
        CAIRN_SERVER_MAX_CONNECTIONS_DEFAULT, 1,
        CAIRN_SERVER_MAX_CONNECTIONS_CAP, 0, "concurrent connections"),
    U32("server", "max_header_bytes", max_header_bytes,
        CAIRN_SERVER_MAX_HEADER_BYTES_DEFAULT,
        CAIRN_SERVER_MAX_HEADER_BYTES_MIN, CAIRN_SERVER_MAX_HEADER_BYTES_CAP,
        KF_SIZE, "request line plus headers"),
    U64("server", "max_body_bytes", max_body_bytes,
        CAIRN_SERVER_MAX_BODY_BYTES_DEFAULT, 1,
        CAIRN_SERVER_MAX_BODY_BYTES_CAP, KF_SIZE,
        "one request body as received (413 above)"),
    U32("server", "request_timeout_secs", request_timeout_secs,
        CAIRN_SERVER_REQUEST_TIMEOUT_SECS_DEFAULT, 1,
        CAIRN_SERVER_REQUEST_TIMEOUT_SECS_CAP, 0,
        "a request that takes longer to arrive is cut off"),
    U32("server", "client_rate", client_rate, 0, 0,
        CAIRN_SERVER_CLIENT_RATE_CAP, 0,
        "requests per second per client address (429 above); 0 = off"),
    U32("server", "client_burst", client_burst,
        CAIRN_SERVER_CLIENT_BURST_DEFAULT, 1, CAIRN_SERVER_CLIENT_BURST_CAP,
        0, "requests a client may send at once when `client_rate` is on"),
    BOOL("server", "insecure", insecure, 0,
         "allow a non-loopback `listen` without `[auth]` tokens"),

    /* [limits] */
    U64("limits", "max_input_bytes", guard.max_input_bytes,
        CAIRN_GUARD_MAX_INPUT_BYTES_DEFAULT, 1,
        CAIRN_GUARD_MAX_INPUT_BYTES_CAP, KF_SIZE,
        "one payload as received, before decoding"),
    U64("limits", "max_decompressed_bytes", guard.max_decompressed_bytes,
        CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_DEFAULT, 1,
        CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_CAP, KF_SIZE,
        "bytes produced by decompression, summed over all layers"),
    U32("limits", "max_compression_ratio", guard.max_compression_ratio,
        CAIRN_GUARD_MAX_COMPRESSION_RATIO_DEFAULT, 1,
        CAIRN_GUARD_MAX_COMPRESSION_RATIO_CAP, 0,
        "decoded bytes per input byte, checked after 64 KiB of output"),
    U32("limits", "max_decode_layers", guard.max_decode_layers,
        CAIRN_GUARD_MAX_DECODE_LAYERS_DEFAULT, 0,
        CAIRN_GUARD_MAX_DECODE_LAYERS_CAP, 0,
        "nested compression layers decoded; 0 refuses compressed input"),
    U32("limits", "max_json_depth", guard.max_json_depth,
        CAIRN_GUARD_MAX_JSON_DEPTH_DEFAULT, 1, CAIRN_GUARD_MAX_JSON_DEPTH_CAP,
        0, "open JSON arrays and objects"),
    U32("limits", "max_json_string_bytes", guard.max_json_string_bytes,
        CAIRN_GUARD_MAX_JSON_STRING_BYTES_DEFAULT, 1,
        CAIRN_GUARD_MAX_JSON_STRING_BYTES_CAP, KF_SIZE,
        "encoded bytes of one JSON string or key"),
    U32("limits", "max_json_members", guard.max_json_members,
        CAIRN_GUARD_MAX_JSON_MEMBERS_DEFAULT, 1,
        CAIRN_GUARD_MAX_JSON_MEMBERS_CAP, 0,
        "members of one JSON object or elements of one array"),

    /* [guard] */
    STR("guard", "patterns", guard.patterns_path, "",
        KF_EMPTY_NULL | KF_NONE_EMPTY,
        "pattern file (docs/GUARD.md); empty = the built-in default set, "
        "`none` = no patterns"),
    BOOL("guard", "allow_duplicate_keys", guard.allow_duplicate_keys, 0,
         "accept JSON objects that repeat a key"),
    BOOL("guard", "allow_unsupported_encoding",
         guard.allow_unsupported_encoding, 0,
         "pass bzip2/xz/zip/lz4/7z/brotli payloads through undecoded "
         "instead of refusing them (415)"),

    /* [breaker] */
    U32("breaker", "failure_threshold", log.breaker.failure_threshold,
        CAIRN_BREAKER_FAILURE_THRESHOLD_DEFAULT, 0,
        CAIRN_BREAKER_FAILURE_THRESHOLD_CAP, 0,
        "failures within the window that open a stream's breaker; 0 = off"),
    U32("breaker", "failure_window_secs", log.breaker.failure_window_secs,
        CAIRN_BREAKER_WINDOW_SECS_DEFAULT, 1, CAIRN_BREAKER_SECS_CAP, 0,
        "window in which failures are counted"),
    U32("breaker", "recovery_timeout_secs", log.breaker.recovery_timeout_secs,
        CAIRN_BREAKER_RECOVERY_SECS_DEFAULT, 1, CAIRN_BREAKER_SECS_CAP, 0,
        "open -> half-open after this long"),
    U32("breaker", "half_open_max_requests",
        log.breaker.half_open_max_requests, CAIRN_BREAKER_HALF_OPEN_MAX_DEFAULT,
        1, CAIRN_BREAKER_HALF_OPEN_MAX_CAP, 0,
        "probe requests admitted while half-open"),
    DBL("breaker", "success_threshold", log.breaker.success_threshold, 0.8,
        0.0, 1.0, KF_MIN_EXCL,
        "fraction of the probes that must succeed to close the breaker"),

    /* [throttle] */
    U32("throttle", "stream_rate", log.throttle.stream_rate, 0, 0,
        CAIRN_THROTTLE_RATE_CAP, 0,
        "events per second per stream (GCRA; 429 above); 0 = off"),
    U32("throttle", "stream_burst", log.throttle.stream_burst,
        CAIRN_THROTTLE_BURST_DEFAULT, 1, CAIRN_THROTTLE_BURST_CAP, 0,
        "events a stream may take at once when `stream_rate` is on"),

    /* [metrics] */
    ENUM("metrics", "provider", metrics_provider, "auto", provider_choices,
         "`seqlock` or `standard` (rwlock) metrics; `auto` follows "
         "`enhanced_mode`"),

    /* [projection] */
    U32("projection", "snapshot_every", snapshot_every,
        CAIRN_PROJECTION_SNAPSHOT_EVERY_DEFAULT, 0,
        CAIRN_PROJECTION_SNAPSHOT_EVERY_CAP, 0,
        "events per stream between projection snapshots; 0 = none"),
    U32("projection", "cache", projection_cache,
        CAIRN_PROJECTION_CACHE_DEFAULT, 1, CAIRN_PROJECTION_CACHE_CAP, 0,
        "streams cached per projection (LRU)"),
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* Sections that hold table keys, plus [auth]; [fsm.NAME] is separate. */
static const char *const sections[] = {
    "event_processor", "storage", "server",  "limits",     "guard",
    "breaker",         "throttle", "metrics", "projection", "auth",
};
#define NSECTIONS (sizeof sections / sizeof sections[0])

/* ---- loader state and errors ------------------------------------------- */

enum origin { FROM_DEFAULT, FROM_FILE, FROM_ENV, FROM_FLAG };

struct loader {
    cairn_config_t *cfg;
    char *err;
    size_t errlen;
    int failed;
    enum origin origin;
    const char *where; /* file name or environment variable */
    unsigned line;     /* file line, 0 elsewhere */
    unsigned key_line[NKEYS]; /* file line that set a key (duplicates) */
    /* The file, handed to inih a line at a time. */
    const char *text;
    size_t text_len, pos;
    char raw[CAIRN_FSM_DEF_LINE_MAX]; /* current line, whitespace-stripped */
    int tokens_replaced; /* this layer already dropped the lower layer's */
};

__attribute__((format(printf, 3, 4))) static void
fail(struct loader *L, const char *label, const char *fmt, ...)
{
    if (L->failed)
        return;
    L->failed = 1;
    if (!L->err || !L->errlen)
        return;
    size_t n = 0;
    int w = 0;
    if (L->origin == FROM_FILE && L->line)
        w = snprintf(L->err, L->errlen, "%s:%u: ", L->where, L->line);
    else if (L->origin == FROM_FILE || L->origin == FROM_ENV)
        w = snprintf(L->err, L->errlen, "%s: ", L->where);
    if (w > 0)
        n = (size_t)w < L->errlen ? (size_t)w : L->errlen - 1;
    if (label && n < L->errlen) {
        w = snprintf(L->err + n, L->errlen - n, "%s: ", label);
        if (w > 0)
            n += (size_t)w < L->errlen - n ? (size_t)w : L->errlen - n - 1;
    }
    if (n < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + n, L->errlen - n, fmt, ap);
        va_end(ap);
    }
}

static void key_label(const struct config_key *k, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%s", k->section, k->name);
}

static const struct config_key *find_key(const char *section, size_t sec_len,
                                         const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].section) == sec_len &&
            !strncmp(keys[i].section, section, sec_len) &&
            !strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static int known_section(const char *section, size_t len)
{
    for (size_t i = 0; i < NSECTIONS; i++)
        if (strlen(sections[i]) == len && !strncmp(sections[i], section, len))
            return 1;
    return 0;
}

/* ---- value parsing ------------------------------------------------------- */

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Digits, optionally followed by a binary size suffix when sizes are
 * allowed.  Returns 0, -1 (not a number), -2 (overflow). */
static int parse_uint(const char *v, int sizes, uint64_t *out)
{
    const char *p = v;
    if (!isdigit((unsigned char)*p))
        return -1;
    uint64_t n = 0;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -2;
        n = n * 10 + d;
    }
    if (*p && sizes) {
        static const struct {
            const char *suffix;
            unsigned shift;
        } units[] = {{"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30},
                     {"TiB", 40}};
        while (*p == ' ')
            p++;
        size_t i;
        for (i = 0; i < sizeof units / sizeof units[0]; i++)
            if (!strcmp(p, units[i].suffix))
                break;
        if (i == sizeof units / sizeof units[0])
            return -1;
        if (units[i].shift && n > (UINT64_MAX >> units[i].shift))
            return -2;
        n <<= units[i].shift;
        p += strlen(p);
    }
    if (*p)
        return -1;
    *out = n;
    return 0;
}

/* "64 MiB" for exact multiples, else the plain number. */
static void format_size(uint64_t n, int sizes, char *buf, size_t len)
{
    static const char *const names[] = {"TiB", "GiB", "MiB", "KiB"};
    static const unsigned shifts[] = {40, 30, 20, 10};
    if (sizes && n) {
        for (size_t i = 0; i < 4; i++) {
            uint64_t unit = UINT64_C(1) << shifts[i];
            if (n % unit == 0) {
                snprintf(buf, len, "%llu %s",
                         (unsigned long long)(n / unit), names[i]);
                return;
            }
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)n);
}

static void format_uint(const struct config_key *k, uint64_t n, char *buf,
                        size_t len)
{
    format_size(n, (k->flags & KF_SIZE) != 0, buf, len);
}

/* HOST:PORT, HOST non-empty (an IPv6 address in brackets), PORT 1..65535. */
static const char *check_hostport(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v)
        return "expected HOST:PORT";
    if (v[0] == '[' && colon[-1] != ']')
        return "expected [IPv6]:PORT";
    if (v[0] != '[' && memchr(v, ':', (size_t)(colon - v)))
        return "an IPv6 address needs brackets: [ADDR]:PORT";
    for (const char *p = v; p < colon; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return "the host contains a space or control character";
    uint64_t port;
    if (parse_uint(colon + 1, 0, &port) || port < 1 || port > 65535)
        return "the port must be 1 .. 65535";
    return NULL;
}

static void free_string_field(cairn_config_t *cfg, const struct config_key *k)
{
    const char *s;
    memcpy(&s, (char *)cfg + k->offset, sizeof s);
    free((char *)s);
    s = NULL;
    memcpy((char *)cfg + k->offset, &s, sizeof s);
}

/* Parse `v` as key k's value and store it.  Returns 0 or fails L. */
static int set_value(struct loader *L, const struct config_key *k,
                     const char *v)
{
    char label[96];
    key_label(k, label, sizeof label);
    char *field = (char *)L->cfg + k->offset;
    char lo[32], hi[32];

    switch (k->type) {
    case KT_BOOL: {
        int b;
        if (parse_bool(v, &b)) {
            fail(L, label,
                 "not a boolean: '%s' (true/false, yes/no, on/off, 1/0)", v);
            return -1;
        }
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case KT_U32:
    case KT_U64: {
        uint64_t n;
        int rc = parse_uint(v, (k->flags & KF_SIZE) != 0, &n);
        if (rc == -1) {
            fail(L, label,
                 (k->flags & KF_SIZE)
                     ? "not a size: '%s' (digits, optionally KiB/MiB/GiB/TiB)"
                     : "not a number: '%s'",
                 v);
            return -1;
        }
        format_uint(k, k->min, lo, sizeof lo);
        format_uint(k, k->max, hi, sizeof hi);
        if (rc == -2 || n < k->min || n > k->max) {
            fail(L, label, "out of range: %s (allowed %s .. %s)", v, lo, hi);
            return -1;
        }
        if (k->type == KT_U32) {
            uint32_t u = (uint32_t)n;
            memcpy(field, &u, sizeof u);
        } else {
            memcpy(field, &n, sizeof n);
        }
        return 0;
    }
    case KT_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno == ERANGE || !isfinite(d)) {
            fail(L, label, "not a number: '%s'", v);
            return -1;
        }
        if (d > k->dmax || d < k->dmin ||
            ((k->flags & KF_MIN_EXCL) && d == k->dmin)) {
            fail(L, label, "out of range: %s (allowed %s%g .. %g])", v,
                 (k->flags & KF_MIN_EXCL) ? "(" : "[", k->dmin, k->dmax);
            return -1;
        }
        memcpy(field, &d, sizeof d);
        return 0;
    }
    case KT_ENUM: {
        for (const struct choice *c = k->choices; c->name; c++) {
            if (!strcasecmp(v, c->name)) {
                int value = c->value;
                memcpy(field, &value, sizeof value);
                return 0;
            }
        }
        char names[128] = "";
        for (const struct choice *c = k->choices; c->name; c++) {
            if (c != k->choices)
                strncat(names, "|", sizeof names - strlen(names) - 1);
            strncat(names, c->name, sizeof names - strlen(names) - 1);
        }
        fail(L, label, "not one of %s: '%s'", names, v);
        return -1;
    }
    case KT_STRING: {
        if (k->flags & KF_HOSTPORT) {
            const char *why = check_hostport(v);
            if (why) {
                fail(L, label, "%s: '%s'", why, v);
                return -1;
            }
        }
        char *copy = NULL;
        if ((k->flags & KF_NONE_EMPTY) && !strcmp(v, "none"))
            copy = strdup("");
        else if (!((k->flags & KF_EMPTY_NULL) && !*v))
            copy = strdup(v);
        if ((*v || !(k->flags & KF_EMPTY_NULL)) && !copy) {
            fail(L, label, "out of memory");
            return -1;
        }
        free_string_field(L->cfg, k);
        memcpy(field, &copy, sizeof copy);
        return 0;
    }
    }
    return -1;
}

/* A value as written in the environment or a flag: a double-quoted string
 * loses its quotes (escapes \" \\ \n \t \r); anything else is literal. */
static int unquote(struct loader *L, const char *label, const char *in,
                   char *out, size_t outlen, const char **rest)
{
    size_t n = 0;
    const char *p = in + 1;
    for (; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            switch (*p) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            default:
                fail(L, label, "unsupported escape '\\%c' in a quoted string",
                     *p ? *p : ' ');
                return -1;
            }
        }
        if (n + 1 >= outlen) {
            fail(L, label, "value too long");
            return -1;
        }
        out[n++] = c;
    }
    if (*p != '"') {
        fail(L, label, "unterminated quoted string");
        return -1;
    }
    out[n] = '\0';
    *rest = p + 1;
    return 0;
}

static int plain_value(struct loader *L, const char *label, const char *in,
                       char *out, size_t outlen)
{
    if (in[0] == '"') {
        const char *rest;
        if (unquote(L, label, in, out, outlen, &rest))
            return -1;
        if (*rest) {
            fail(L, label, "text after the closing quote");
            return -1;
        }
        return 0;
    }
    if (strlen(in) >= outlen) {
        fail(L, label, "value too long");
        return -1;
    }
    strcpy(out, in);
    return 0;
}

/* ---- [auth] token -------------------------------------------------------- */

static int add_token(struct loader *L, const char *v)
{
    cairn_config_t *cfg = L->cfg;
    const char *label = "auth.token";
    if (!L->tokens_replaced) {
        /* The first token of a layer replaces the lower layers' tokens. */
        for (unsigned i = 0; i < cfg->ntokens; i++) {
            free(cfg->tokens[i].name);
            if (cfg->tokens[i].secret)
                memset(cfg->tokens[i].secret, 0, cfg->tokens[i].secret_len);
            free(cfg->tokens[i].secret);
        }
        memset(cfg->tokens, 0, sizeof cfg->tokens);
        cfg->ntokens = 0;
        L->tokens_replaced = 1;
    }
    const char *c1 = strchr(v, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2) {
        fail(L, label, "expected NAME:ROLE:SECRET");
        return -1;
    }
    size_t name_len = (size_t)(c1 - v);
    if (name_len < 1 || name_len > CAIRN_CONFIG_TOKEN_NAME_MAX) {
        fail(L, label, "the name must be 1 .. %u bytes",
             CAIRN_CONFIG_TOKEN_NAME_MAX);
        return -1;
    }
    for (const char *p = v; p < c1; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' &&
            *p != '-') {
            fail(L, label, "the name '%.*s' may hold only A-Z a-z 0-9 _ . -",
                 (int)name_len, v);
            return -1;
        }
    size_t role_len = (size_t)(c2 - c1 - 1);
    cairn_role_t role;
    if (role_len == 4 && !strncmp(c1 + 1, "read", 4))
        role = CAIRN_ROLE_READ;
    else if (role_len == 6 && !strncmp(c1 + 1, "append", 6))
        role = CAIRN_ROLE_APPEND;
    else if (role_len == 5 && !strncmp(c1 + 1, "admin", 5))
        role = CAIRN_ROLE_ADMIN;
    else {
        fail(L, label, "token '%.*s': the role must be read, append or admin",
             (int)name_len, v);
        return -1;
    }
    const char *secret = c2 + 1;
    size_t secret_len = strlen(secret);
    if (secret_len < CAIRN_CONFIG_SECRET_MIN ||
        secret_len > CAIRN_CONFIG_SECRET_MAX) {
        fail(L, label, "token '%.*s': the secret must be %u .. %u bytes",
             (int)name_len, v, CAIRN_CONFIG_SECRET_MIN,
             CAIRN_CONFIG_SECRET_MAX);
        return -1;
    }
    for (const char *p = secret; *p; p++)
        if (*p <= ' ' || *p > '~') {
            fail(L, label,
                 "token '%.*s': the secret may hold only printable ASCII "
                 "without spaces",
                 (int)name_len, v);
            return -1;
        }
    for (unsigned i = 0; i < cfg->ntokens; i++) {
        if (strlen(cfg->tokens[i].name) == name_len &&
            !strncmp(cfg->tokens[i].name, v, name_len)) {
            fail(L, label, "token '%.*s' is defined twice", (int)name_len, v);
            return -1;
        }
        if (cfg->tokens[i].secret_len == secret_len &&
            !memcmp(cfg->tokens[i].secret, secret, secret_len)) {
            fail(L, label, "tokens '%s' and '%.*s' have the same secret",
                 cfg->tokens[i].name, (int)name_len, v);
            return -1;
        }
    }
    if (cfg->ntokens == CAIRN_CONFIG_TOKENS_MAX) {
        fail(L, label, "too many tokens (at most %d)", CAIRN_CONFIG_TOKENS_MAX);
        return -1;
    }
    cairn_config_token_t *t = &cfg->tokens[cfg->ntokens];
    t->name = strndup(v, name_len);
    t->secret = strdup(secret);
    if (!t->name || !t->secret) {
        free(t->name);
        free(t->secret);
        t->name = t->secret = NULL;
        fail(L, label, "out of memory");
        return -1;
    }
    t->role = role;
    t->secret_len = secret_len;
    cfg->ntokens++;
    return 0;
}

/* ---- [fsm.NAME] ------------------------------------------------------------ */

static cairn_config_fsm_t *fsm_section(struct loader *L, const char *name,
                                       const char *label)
{
    cairn_config_t *cfg = L->cfg;
    for (unsigned i = 0; i < cfg->nfsms; i++)
        if (!strcmp(cfg->fsms[i].name, name))
            return &cfg->fsms[i];
    if (!*name) {
        fail(L, label, "the section needs a name: [fsm.NAME]");
        return NULL;
    }
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-') {
            fail(L, label, "an FSM name may hold only A-Z a-z 0-9 _ -");
            return NULL;
        }
    if (cfg->nfsms == CAIRN_CONFIG_FSMS_MAX) {
        fail(L, label, "too many [fsm.*] sections (at most %d)",
             CAIRN_CONFIG_FSMS_MAX);
        return NULL;
    }
    cairn_config_fsm_t *f = &cfg->fsms[cfg->nfsms];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    if (!f->name) {
        fail(L, label, "out of memory");
        return NULL;
    }
    cfg->nfsms++;
    return f;
}

static int fsm_line(struct loader *L, const char *fsm_name, const char *key,
                    const char *value)
{
    char label[160];
    snprintf(label, sizeof label, "fsm.%s.%s", fsm_name, key);
    cairn_config_fsm_t *f = fsm_section(L, fsm_name, label);
    if (!f)
        return -1;
    if (!strcmp(key, "streams")) {
        size_t n = strlen(value);
        if (f->streams) {
            fail(L, label, "set twice");
            return -1;
        }
        if (n < 2 || value[n - 1] != '*' || memchr(value, '*', n - 1)) {
            fail(L, label, "expected PREFIX* (a non-empty stream prefix "
                           "followed by '*'): '%s'", value);
            return -1;
        }
        f->streams = strndup(value, n - 1);
        if (!f->streams) {
            fail(L, label, "out of memory");
            return -1;
        }
        return 0;
    }
    if (f->nlines == CAIRN_CONFIG_FSM_LINES_MAX) {
        fail(L, label, "too many lines (at most %d)",
             CAIRN_CONFIG_FSM_LINES_MAX);
        return -1;
    }
    cairn_config_fsm_line_t *ln = &f->lines[f->nlines];
    ln->key = strdup(key);
    ln->value = strdup(value);
    if (!ln->key || !ln->value) {
        free(ln->key);
        free(ln->value);
        ln->key = ln->value = NULL;
        fail(L, label, "out of memory");
        return -1;
    }
    ln->line = L->line;
    f->nlines++;
    return 0;
}

int cairn_config_fsm_build(const cairn_config_fsm_t *fsm,
                           struct cairn_fsm_def **out, char *err,
                           size_t errlen)
{
    cairn_fsm_builder_t *b = NULL;
    cairn_fsm_error_t fe;
    memset(&fe, 0, sizeof fe);
    *out = NULL;
    int rc = cairn_fsm_builder_open(&b);
    for (unsigned i = 0; rc == 0 && i < fsm->nlines; i++)
        rc = cairn_fsm_builder_add(b, fsm->lines[i].key, fsm->lines[i].value,
                                   fsm->lines[i].line, &fe);
    if (rc == 0)
        rc = cairn_fsm_builder_finish(b, out, &fe);
    cairn_fsm_builder_close(b);
    if (rc && err && errlen) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "fsm.%s: out of memory", fsm->name);
        else
            snprintf(err, errlen, "fsm.%s: %s", fsm->name, fe.message);
    }
    return rc;
}

/* Check every FSM: bound to streams, prefixes disjoint, definition builds.
 * Errors carry the file and line of the faulty line. */
static int check_fsms(struct loader *L)
{
    cairn_config_t *cfg = L->cfg;
    for (unsigned i = 0; i < cfg->nfsms; i++) {
        cairn_config_fsm_t *f = &cfg->fsms[i];
        char label[160];
        snprintf(label, sizeof label, "fsm.%s", f->name);
        L->line = 0;
        if (!f->streams) {
            fail(L, label, "no `streams = PREFIX*` line binds it to streams");
            return -1;
        }
        for (unsigned j = 0; j < i; j++) {
            const char *a = cfg->fsms[j].streams, *b = f->streams;
            size_t la = strlen(a), lb = strlen(b);
            if (!strncmp(a, b, la < lb ? la : lb)) {
                fail(L, label,
                     "streams '%s*' overlap fsm.%s's '%s*': a stream may be "
                     "bound to one FSM only",
                     b, cfg->fsms[j].name, a);
                return -1;
            }
        }
        cairn_fsm_builder_t *b = NULL;
        cairn_fsm_def_t *def = NULL;
        cairn_fsm_error_t fe;
        memset(&fe, 0, sizeof fe);
        int rc = cairn_fsm_builder_open(&b);
        for (unsigned k = 0; rc == 0 && k < f->nlines; k++)
            rc = cairn_fsm_builder_add(b, f->lines[k].key, f->lines[k].value,
                                       f->lines[k].line, &fe);
        if (rc == 0)
            rc = cairn_fsm_builder_finish(b, &def, &fe);
        cairn_fsm_builder_close(b);
        cairn_fsm_def_free(def);
        if (rc == -ENOMEM) {
            fail(L, label, "out of memory");
            return -1;
        }
        if (rc) {
            /* The builder's message starts with "line N: "; the prefix of
             * fail() already says where. */
            const char *msg = fe.message;
            if (fe.line && !strncmp(msg, "line ", 5)) {
                const char *colon = strstr(msg, ": ");
                if (colon)
                    msg = colon + 2;
            }
            L->line = fe.line;
            fail(L, label, "%s", msg);
            return -1;
        }
    }
    return 0;
}

/* ---- the file -------------------------------------------------------------- */

/* inih's reader: the next line without leading whitespace (see DESIGN). */
static char *file_reader(char *str, int num, void *stream)
{
    struct loader *L = stream;
    if (L->failed || L->pos >= L->text_len)
        return NULL;
    const char *start = L->text + L->pos;
    const char *nl = memchr(start, '\n', L->text_len - L->pos);
    size_t len = nl ? (size_t)(nl - start) : L->text_len - L->pos;
    L->pos += len + (nl ? 1 : 0);
    L->line++;
    if (len && start[len - 1] == '\r')
        len--;
    if (L->line == 1 && len >= 3 && !memcmp(start, "\xEF\xBB\xBF", 3)) {
        start += 3; /* a UTF-8 byte-order mark */
        len -= 3;
    }
    while (len && (*start == ' ' || *start == '\t')) {
        start++;
        len--;
    }
    if (memchr(start, '\0', len)) {
        fail(L, NULL, "a NUL byte in the file");
        return NULL;
    }
    /* inih needs room for the line, its newline and the terminator. */
    size_t room = num > 2 ? (size_t)num - 2 : 0;
    if (len > room || len >= sizeof L->raw) {
        fail(L, NULL, "line too long (at most %zu bytes after indentation)",
             room < sizeof L->raw - 1 ? room : sizeof L->raw - 1);
        return NULL;
    }
    if (len && start[0] == '[') {
        /* inih keeps at most 49 bytes of a section name, silently. */
        const char *close = memchr(start, ']', len);
        if (close && close - start - 1 > 49) {
            fail(L, NULL, "section name too long (at most 49 bytes)");
            return NULL;
        }
        /* An unknown section is an error even when it holds no key. */
        size_t name_len = close ? (size_t)(close - start - 1) : 0;
        if (close && !known_section(start + 1, name_len) &&
            strncmp(start + 1, "fsm.", 4)) {
            fail(L, NULL, "[%.*s]: unknown section", (int)name_len,
                 start + 1);
            return NULL;
        }
    }
    memcpy(L->raw, start, len);
    L->raw[len] = '\0';
    memcpy(str, start, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

/* The value of the current raw line "name = value ; comment": a quoted
 * string with escapes, or the text up to a ';' or '#' that follows
 * whitespace, trimmed. */
static int file_value(struct loader *L, const char *label, char *out,
                      size_t outlen)
{
    const char *p = L->raw + strcspn(L->raw, "=:");
    if (*p != '=') {
        fail(L, label, "expected `key = value`");
        return -1;
    }
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '"') {
        const char *rest;
        if (unquote(L, label, p, out, outlen, &rest))
            return -1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest && *rest != ';' && *rest != '#') {
            fail(L, label, "text after the closing quote");
            return -1;
        }
        return 0;
    }
    size_t n = 0;
    for (; p[n]; n++)
        if ((p[n] == ';' || p[n] == '#') &&
            (n == 0 || p[n - 1] == ' ' || p[n - 1] == '\t'))
            break;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n >= outlen) {
        fail(L, label, "value too long");
        return -1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static int file_handler(void *user, const char *section, const char *name,
                        const char *inih_value)
{
    struct loader *L = user;
    (void)inih_value;
    if (L->failed)
        return 0;
    char label[160];
    snprintf(label, sizeof label, "%s.%s", section, name);
    char value[CAIRN_FSM_DEF_LINE_MAX];
    if (!*section) {
        fail(L, name, "a key outside any [section]");
        return 0;
    }
    if (file_value(L, label, value, sizeof value))
        return 0;
    if (!strncmp(section, "fsm.", 4) || !strcmp(section, "fsm"))
        return fsm_line(L, section[3] ? section + 4 : "", name, value) == 0;
    if (!strcmp(section, "auth")) {
        if (strcmp(name, "token")) {
            fail(L, label, "unknown key (the [auth] key is `token`)");
            return 0;
        }
        return add_token(L, value) == 0;
    }
    if (!known_section(section, strlen(section))) {
        fail(L, label, "unknown section [%s]", section);
        return 0;
    }
    const struct config_key *k = find_key(section, strlen(section), name);
    if (!k) {
        fail(L, label, "unknown key");
        return 0;
    }
    size_t idx = (size_t)(k - keys);
    if (L->key_line[idx]) {
        fail(L, label, "set twice (first on line %u)", L->key_line[idx]);
        return 0;
    }
    L->key_line[idx] = L->line;
    return set_value(L, k, value) == 0;
}

#define CAIRN_CONFIG_FILE_MAX (1u << 20)

static int load_file(struct loader *L, const char *path)
{
    L->origin = FROM_FILE;
    L->where = path;
    L->line = 0;
    L->tokens_replaced = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(L, NULL, "cannot open: %s", strerror(errno));
        return -1;
    }
    char *text = malloc(CAIRN_CONFIG_FILE_MAX + 1);
    if (!text) {
        fclose(f);
        fail(L, NULL, "out of memory");
        return -1;
    }
    size_t n = fread(text, 1, CAIRN_CONFIG_FILE_MAX + 1, f);
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(text);
        fail(L, NULL, "cannot read");
        return -1;
    }
    if (n > CAIRN_CONFIG_FILE_MAX) {
        free(text);
        fail(L, NULL, "larger than %u bytes", CAIRN_CONFIG_FILE_MAX);
        return -1;
    }
    L->text = text;
    L->text_len = n;
    L->pos = 0;
    int rc = ini_parse_stream(file_reader, L, file_handler, L);
    L->text = NULL;
    free(text);
    if (!L->failed && rc > 0) {
        /* inih's own framing error: not [section] nor key = value. */
        L->line = (unsigned)rc;
        fail(L, NULL, "expected `[section]` or `key = value`");
    } else if (!L->failed && rc < 0) {
        fail(L, NULL, "cannot parse (inih error %d)", rc);
    }
    if (L->failed)
        return -1;
    L->line = 0;
    return check_fsms(L);
}

/* ---- environment ------------------------------------------------------------ */

/* CAIRN_ + upper(section) + _ + upper(key), dots and dashes as '_'. */
static void env_name(const char *section, const char *name, char *buf,
                     size_t len)
{
    snprintf(buf, len, "CAIRN_%s_%s", section, name);
    for (char *p = buf; *p; p++) {
        if (*p == '.' || *p == '-')
            *p = '_';
        else
            *p = (char)toupper((unsigned char)*p);
    }
}

static int load_env(struct loader *L)
{
    char var[128], label[96], value[CAIRN_FSM_DEF_LINE_MAX];
    L->origin = FROM_ENV;
    L->line = 0;
    L->tokens_replaced = 0;
    /* A CAIRN_<SECTION>_ variable that names no key is a typo. */
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "CAIRN_", 6))
            continue;
        const char *eq = strchr(*e, '=');
        size_t name_len = eq ? (size_t)(eq - *e) : strlen(*e);
        for (size_t s = 0; s < NSECTIONS; s++) {
            char prefix[64];
            env_name(sections[s], "", prefix, sizeof prefix);
            size_t pl = strlen(prefix);
            if (name_len <= pl || strncmp(*e, prefix, pl))
                continue;
            int found = 0;
            for (size_t i = 0; i < NKEYS && !found; i++) {
                if (strcmp(keys[i].section, sections[s]))
                    continue;
                env_name(keys[i].section, keys[i].name, var, sizeof var);
                found = strlen(var) == name_len && !strncmp(var, *e, name_len);
            }
            if (!strcmp(sections[s], "auth"))
                found = name_len == strlen("CAIRN_AUTH_TOKEN") &&
                        !strncmp(*e, "CAIRN_AUTH_TOKEN", name_len);
            if (!found) {
                snprintf(var, sizeof var, "%.*s", (int)name_len, *e);
                L->where = var;
                fail(L, NULL, "no such key in [%s]", sections[s]);
                return -1;
            }
        }
    }
    for (size_t i = 0; i < NKEYS; i++) {
        env_name(keys[i].section, keys[i].name, var, sizeof var);
        const char *v = getenv(var);
        if (!v)
            continue;
        L->where = var;
        key_label(&keys[i], label, sizeof label);
        if (plain_value(L, label, v, value, sizeof value) ||
            set_value(L, &keys[i], value))
            return -1;
    }
    /* CAIRN_AUTH_TOKEN: one or more tokens separated by whitespace. */
    const char *t = getenv("CAIRN_AUTH_TOKEN");
    if (t) {
        L->where = "CAIRN_AUTH_TOKEN";
        const char *p = t;
        while (*p) {
            while (isspace((unsigned char)*p))
                p++;
            size_t n = 0;
            while (p[n] && !isspace((unsigned char)p[n]))
                n++;
            if (!n)
                break;
            if (n >= sizeof value) {
                fail(L, "auth.token", "value too long");
                return -1;
            }
            memcpy(value, p, n);
            value[n] = '\0';
            int rc = add_token(L, value);
            memset(value, 0, n);
            if (rc)
                return -1;
            p += n;
        }
    }
    return 0;
}

/* ---- flags ----------------------------------------------------------------- */

/* Stands for the repeatable `[auth] token` in a flag list. */
static const struct config_key token_flag = {.section = "auth",
                                             .name = "token"};
#define FLAG_TOKEN (&token_flag)

struct flag_set {
    const struct config_key *key; /* or FLAG_TOKEN */
    const char *value;
};

static int usage(struct loader *L, const char *fmt, const char *arg)
{
    if (L->err && L->errlen)
        snprintf(L->err, L->errlen, fmt, arg);
    L->failed = 1;
    return CAIRN_CONFIG_USAGE;
}

/* Pass 1: every flag well-formed and known; values are checked later. */
static int parse_flags(struct loader *L, int argc, char **argv,
                       struct flag_set *sets, size_t *nsets,
                       const char **config_file)
{
    const struct config_key *data_key = find_key("storage", 7, "data_dir");
    const struct config_key *listen_key = find_key("server", 6, "listen");
    const struct config_key *insecure_key = find_key("server", 6, "insecure");
    *nsets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2])
            return usage(L, "unexpected argument '%s'", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        char flag[128];
        if (name_len >= sizeof flag)
            return usage(L, "unknown option '%s'", a);
        memcpy(flag, name, name_len);
        flag[name_len] = '\0';

        const struct config_key *k = NULL;
        int is_config = 0;
        if (!strcmp(flag, "config"))
            is_config = 1;
        else if (!strcmp(flag, "data"))
            k = data_key;
        else if (!strcmp(flag, "listen"))
            k = listen_key;
        else if (!strcmp(flag, "insecure"))
            k = insecure_key;
        else if (!strcmp(flag, "auth.token"))
            k = FLAG_TOKEN;
        else {
            const char *dot = strchr(flag, '.');
            if (!dot || !known_section(flag, (size_t)(dot - flag)))
                return usage(L, "unknown option '%s'", a);
            k = find_key(flag, (size_t)(dot - flag), dot + 1);
            if (!k)
                return usage(L, "unknown option '%s' (no such key)", a);
        }

        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (k && k != FLAG_TOKEN && k->type == KT_BOOL) {
            /* --key alone means true; a boolean word after it is its
             * value. */
            int b;
            if (i + 1 < argc && !parse_bool(argv[i + 1], &b))
                value = argv[++i];
            else
                value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return usage(L, "option '%s' needs a value", a);
        }
        if (is_config) {
            if (!*value)
                return usage(L, "option '%s' needs a file name", a);
            *config_file = value;
            continue;
        }
        sets[*nsets].key = k;
        sets[*nsets].value = value;
        (*nsets)++;
    }
    return 0;
}

static int apply_flags(struct loader *L, const struct flag_set *sets,
                       size_t nsets)
{
    char label[96], value[CAIRN_FSM_DEF_LINE_MAX];
    L->origin = FROM_FLAG;
    L->line = 0;
    L->where = NULL;
    L->tokens_replaced = 0;
    for (size_t i = 0; i < nsets; i++) {
        if (sets[i].key == FLAG_TOKEN) {
            if (plain_value(L, "auth.token", sets[i].value, value,
                            sizeof value) ||
                add_token(L, value))
                return -1;
            continue;
        }
        key_label(sets[i].key, label, sizeof label);
        if (plain_value(L, label, sets[i].value, value, sizeof value) ||
            set_value(L, sets[i].key, value))
            return -1;
    }
    return 0;
}

/* ---- load and free ----------------------------------------------------------- */

static int apply_defaults(struct loader *L)
{
    char buf[64];
    L->origin = FROM_DEFAULT;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];
        static const size_t want[] = {
            [KT_BOOL] = sizeof(int),       [KT_U32] = sizeof(uint32_t),
            [KT_U64] = sizeof(uint64_t),   [KT_DOUBLE] = sizeof(double),
            [KT_STRING] = sizeof(char *),  [KT_ENUM] = sizeof(int),
        };
        if (k->size != want[k->type]) {
            fail(L, k->name, "internal error: the key table's field has the "
                             "wrong size");
            return -1;
        }
        const char *v = buf;
        switch (k->type) {
        case KT_BOOL:
            v = k->def_u ? "true" : "false";
            break;
        case KT_U32:
        case KT_U64:
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)k->def_u);
            break;
        case KT_DOUBLE:
            snprintf(buf, sizeof buf, "%.17g", k->def_d);
            break;
        case KT_STRING:
        case KT_ENUM:
            v = k->def_s;
            break;
        }
        if (set_value(L, k, v))
            return -1;
    }
    return 0;
}

/* Rules between keys. */
static int check_combined(struct loader *L)
{
    cairn_config_t *cfg = L->cfg;
    L->origin = FROM_DEFAULT;
    if (!cfg->log.data_dir && cfg->durability != CAIRN_DURABILITY_MEMORY) {
        fail(L, "storage.durability",
             "'%s' needs storage.data_dir (an empty data_dir keeps the log "
             "in memory, where only 'memory' is possible)",
             cfg->durability == CAIRN_DURABILITY_OS ? "os" : "sync");
        return -1;
    }
    if (!cfg->enabled) {
        cfg->log.breaker.failure_threshold = 0;
        cfg->log.throttle.stream_rate = 0;
    }
    return 0;
}

int cairn_config_load(int argc, char **argv, cairn_config_t *cfg, char *err,
                      size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cairn_log_opts_init(&cfg->log);
    cairn_guard_opts_init(&cfg->guard);
    if (err && errlen)
        err[0] = '\0';

    struct loader *L = calloc(1, sizeof *L);
    struct flag_set *sets = calloc(argc > 0 ? (size_t)argc : 1, sizeof *sets);
    if (!L || !sets) {
        free(L);
        free(sets);
        if (err && errlen)
            snprintf(err, errlen, "configuration: out of memory");
        return CAIRN_CONFIG_ERROR;
    }
    L->cfg = cfg;
    L->err = err;
    L->errlen = errlen;

    const char *file = NULL;
    size_t nsets = 0;
    int rc = parse_flags(L, argc, argv, sets, &nsets, &file);
    if (rc == 0) {
        rc = CAIRN_CONFIG_ERROR;
        if (apply_defaults(L) == 0 &&
            (!file || ((cfg->config_file = strdup(file)) != NULL &&
                       load_file(L, file) == 0)) &&
            load_env(L) == 0 && apply_flags(L, sets, nsets) == 0 &&
            check_combined(L) == 0)
            rc = 0;
        if (rc && !L->failed && err && errlen)
            snprintf(err, errlen, "configuration: out of memory");
    }
    free(sets);
    free(L);
    if (rc)
        cairn_config_free(cfg);
    return rc;
}

void cairn_config_free(cairn_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == KT_STRING)
            free_string_field(cfg, &keys[i]);
    free(cfg->config_file);
    for (unsigned i = 0; i < cfg->ntokens; i++) {
        free(cfg->tokens[i].name);
        if (cfg->tokens[i].secret)
            memset(cfg->tokens[i].secret, 0, cfg->tokens[i].secret_len);
        free(cfg->tokens[i].secret);
    }
    for (unsigned i = 0; i < cfg->nfsms; i++) {
        cairn_config_fsm_t *f = &cfg->fsms[i];
        free(f->name);
        free(f->streams);
        for (unsigned j = 0; j < f->nlines; j++) {
            free(f->lines[j].key);
            free(f->lines[j].value);
        }
    }
    memset(cfg, 0, sizeof *cfg);
}

const char *cairn_config_role_name(cairn_role_t role)
{
    switch (role) {
    case CAIRN_ROLE_READ: return "read";
    case CAIRN_ROLE_APPEND: return "append";
    case CAIRN_ROLE_ADMIN: return "admin";
    }
    return "?";
}

/* ---- docs ------------------------------------------------------------------ */

void cairn_config_write_docs(FILE *out)
{
    fprintf(out, "| key | type | default | range | what |\n"
                 "|---|---|---|---|---|\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];
        char def[64], range[96], type[96];
        switch (k->type) {
        case KT_BOOL:
            snprintf(type, sizeof type, "bool");
            snprintf(def, sizeof def, "`%s`", k->def_u ? "true" : "false");
            snprintf(range, sizeof range, "—");
            break;
        case KT_U32:
        case KT_U64: {
            char lo[32], hi[32], d[32];
            snprintf(type, sizeof type, "%s",
                     (k->flags & KF_SIZE) ? "size" : "integer");
            format_uint(k, k->def_u, d, sizeof d);
            snprintf(def, sizeof def, "`%s`", d);
            format_uint(k, k->min, lo, sizeof lo);
            if (k->max == UINT64_MAX)
                snprintf(range, sizeof range, "%s .. no cap", lo);
            else {
                format_uint(k, k->max, hi, sizeof hi);
                snprintf(range, sizeof range, "%s .. %s", lo, hi);
            }
            break;
        }
        case KT_DOUBLE:
            snprintf(type, sizeof type, "number");
            snprintf(def, sizeof def, "`%g`", k->def_d);
            snprintf(range, sizeof range, "%s%g .. %g]",
                     (k->flags & KF_MIN_EXCL) ? "(" : "[", k->dmin, k->dmax);
            break;
        case KT_STRING:
            snprintf(type, sizeof type, "%s",
                     (k->flags & KF_HOSTPORT) ? "HOST:PORT" : "string");
            snprintf(def, sizeof def, "`\"%s\"`", k->def_s);
            snprintf(range, sizeof range, "—");
            break;
        case KT_ENUM:
            type[0] = '\0';
            for (const struct choice *c = k->choices; c->name; c++) {
                size_t n = strlen(type);
                snprintf(type + n, sizeof type - n, "%s`%s`",
                         c == k->choices ? "" : " \\| ", c->name);
            }
            snprintf(def, sizeof def, "`%s`", k->def_s);
            snprintf(range, sizeof range, "—");
            break;
        }
        fprintf(out, "| `%s.%s` | %s | %s | %s | %s |\n", k->section, k->name,
                type, def, range, k->doc);
    }
    fprintf(out,
            "| `auth.token` | `NAME:ROLE:SECRET` | none | %u .. %u byte "
            "secret | repeatable; ROLE is `read`, `append` or `admin`; "
            "NAME 1 .. %u bytes of `A-Z a-z 0-9 _ . -`; the secret is "
            "printable ASCII without spaces; at most %d tokens |\n",
            CAIRN_CONFIG_SECRET_MIN, CAIRN_CONFIG_SECRET_MAX,
            CAIRN_CONFIG_TOKEN_NAME_MAX, CAIRN_CONFIG_TOKENS_MAX);
    fprintf(out,
            "| `fsm.NAME.streams` | `PREFIX*` | none | — | binds the state "
            "machine NAME to the streams whose names start with PREFIX; "
            "required in every `[fsm.NAME]`; prefixes of two FSMs may not "
            "overlap; at most %d FSMs |\n",
            CAIRN_CONFIG_FSMS_MAX);
    fprintf(out,
            "| `fsm.NAME.initial`, `.state`, `.transition` | definition "
            "lines | none | — | the state machine (docs/FSM.md); checked at "
            "startup; at most %d lines per FSM |\n",
            CAIRN_CONFIG_FSM_LINES_MAX);
}
