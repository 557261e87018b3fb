/*
 * config.h — cairn's configuration: every key of the INI file, also
 * settable by flag and by environment variable, with its default and cap.
 *
 * Precedence, lowest first: built-in defaults, the INI file (--config
 * FILE), environment variables CAIRN_<SECTION>_<KEY> (upper case, dots and
 * dashes as underscores), then flags --<section>.<key>=VALUE (or
 * --<section>.<key> VALUE).  Shortcuts: --data DIR = --storage.data_dir,
 * --listen HOST:PORT = --server.listen, --insecure = --server.insecure=true.
 * An unknown key or a bad value anywhere is an error naming the key.
 *
 * docs/CONFIG.md lists every key; a test checks it against the key table.
 */
#ifndef CAIRN_SERVER_CONFIG_H
#define CAIRN_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cairn/guard.h"
#include "cairn/log.h"

#define CAIRN_CONFIG_TOKENS_MAX 64
#define CAIRN_CONFIG_FSMS_MAX 32
#define CAIRN_CONFIG_FSM_LINES_MAX 256

/* ---- [server] limits (defaults and caps; docs/CONFIG.md lists them) ----- */

/* Concurrent connections.  Default 1024; cap 65536: each costs a socket,
 * a file descriptor and a libmicrohttpd connection pool. */
#define CAIRN_SERVER_MAX_CONNECTIONS_DEFAULT 1024u
#define CAIRN_SERVER_MAX_CONNECTIONS_CAP 65536u
/* Bytes of a request line plus headers.  Default 16 KiB; minimum 1 KiB;
 * cap 1 MiB: headers are held in memory per connection. */
#define CAIRN_SERVER_MAX_HEADER_BYTES_DEFAULT (16u << 10)
#define CAIRN_SERVER_MAX_HEADER_BYTES_MIN (1u << 10)
#define CAIRN_SERVER_MAX_HEADER_BYTES_CAP (1u << 20)
/* Bytes of one request body as received.  Default 8 MiB; cap 64 MiB: a
 * body is buffered whole before it is appended atomically. */
#define CAIRN_SERVER_MAX_BODY_BYTES_DEFAULT (UINT64_C(8) << 20)
#define CAIRN_SERVER_MAX_BODY_BYTES_CAP (UINT64_C(64) << 20)
/* Seconds a request may take to arrive (slow clients are cut off).
 * Default 30; minimum 1; cap 3600. */
#define CAIRN_SERVER_REQUEST_TIMEOUT_SECS_DEFAULT 30u
#define CAIRN_SERVER_REQUEST_TIMEOUT_SECS_CAP 3600u
/* Requests per second per client address (GCRA); 0 = off (default); cap
 * 10^9 like the stream throttle (the emission interval is >= 1 ns). */
#define CAIRN_SERVER_CLIENT_RATE_CAP 1000000000u
/* Requests a client may send at once.  Default 100; minimum 1; cap
 * 1000000. */
#define CAIRN_SERVER_CLIENT_BURST_DEFAULT 100u
#define CAIRN_SERVER_CLIENT_BURST_CAP 1000000u

/* ---- [auth] ----------------------------------------------------------------- */

/* Bytes of a token secret: at least 16 (guessing must be hopeless; the
 * compare is constant-time, the search space is what protects), at most
 * 256; printable ASCII without spaces.  Names: 1..64 bytes of
 * A-Z a-z 0-9 _ . -. */
#define CAIRN_CONFIG_SECRET_MIN 16u
#define CAIRN_CONFIG_SECRET_MAX 256u
#define CAIRN_CONFIG_TOKEN_NAME_MAX 64u

typedef enum cairn_role {
    CAIRN_ROLE_READ = 1,
    CAIRN_ROLE_APPEND = 2,
    CAIRN_ROLE_ADMIN = 3,
} cairn_role_t;

/* [auth] token = NAME:ROLE:SECRET */
typedef struct cairn_config_token {
    char *name;
    cairn_role_t role;
    char *secret;
    size_t secret_len;
} cairn_config_token_t;

/* One line of a [fsm.NAME] section, kept for cairn_fsm_builder_add(). */
typedef struct cairn_config_fsm_line {
    char *key;
    char *value;
    unsigned line;
} cairn_config_fsm_line_t;

/* [fsm.NAME]: `streams = PREFIX*` binds it; the other lines define it. */
typedef struct cairn_config_fsm {
    char *name;
    char *streams; /* the prefix, without its trailing '*' */
    cairn_config_fsm_line_t lines[CAIRN_CONFIG_FSM_LINES_MAX];
    unsigned nlines;
} cairn_config_fsm_t;

typedef struct cairn_config {
    char *config_file; /* the file read, or NULL */

    /* [event_processor] and [storage]: the log's options, ready to pass to
     * cairn_log_open (strings owned by this struct). */
    cairn_log_opts_t log;
    int enabled;                    /* [event_processor] enabled */
    cairn_durability_t durability;  /* [storage] durability */

    /* [server] */
    char *listen;                   /* "127.0.0.1:7070" */
    uint32_t max_connections;
    uint32_t max_header_bytes;
    uint64_t max_body_bytes;
    uint32_t request_timeout_secs;
    uint32_t client_rate;           /* requests/s per client; 0 = off */
    uint32_t client_burst;
    int insecure;

    /* [limits] and [guard]: the payload guards' options (patterns_path
     * owned by this struct; NULL = the built-in default set). */
    cairn_guard_opts_t guard;

    /* [metrics] provider: 0 follows enhanced_mode, 1 seqlock, 2 standard */
    int metrics_provider;

    /* [projection] */
    uint32_t snapshot_every;
    uint32_t projection_cache;

    /* [auth] */
    cairn_config_token_t tokens[CAIRN_CONFIG_TOKENS_MAX];
    unsigned ntokens;

    /* [fsm.NAME] sections */
    cairn_config_fsm_t fsms[CAIRN_CONFIG_FSMS_MAX];
    unsigned nfsms;
} cairn_config_t;

/* Outcome of cairn_config_load beyond success. */
#define CAIRN_CONFIG_USAGE 2 /* bad flag: exit 2 */
#define CAIRN_CONFIG_ERROR 1 /* bad file, value or environment: exit 1 */

/*
 * Fill *cfg from defaults, --config FILE (if given in argv), environment
 * and argv (the arguments after `serve`; argv[0] is the command name,
 * "serve", as main() passes it, and is skipped).  Returns 0; or
 * CAIRN_CONFIG_USAGE / CAIRN_CONFIG_ERROR with a one-line reason in err
 * ("server.max_connections: not a number: 'lots'"; from a file prefixed
 * with "FILE:LINE: ", from the environment with "CAIRN_...: ").  --help is
 * not handled here.  On error *cfg is freed (and zeroed, so a second
 * cairn_config_free is harmless).
 *
 * Every [fsm.NAME] section is checked by building its definition with
 * cairn_fsm_builder_*; the definition is freed again (build it from
 * cfg->fsms[i].lines with cairn_config_fsm_build).  Secrets are never
 * copied into err.  Not thread-safe (reads the environment).
 */
int cairn_config_load(int argc, char **argv, cairn_config_t *cfg, char *err,
                      size_t errlen);

/* Free what cairn_config_load allocated; zeroes *cfg.  NULL is a no-op. */
void cairn_config_free(cairn_config_t *cfg);

/* Write the key table as the Markdown of docs/CONFIG.md's key list. */
void cairn_config_write_docs(FILE *out);

struct cairn_fsm_def;
/*
 * Build the definition of cfg->fsms[i] (already validated by load) into
 * *out (free with cairn_fsm_def_free).  Returns 0, CAIRN_EFSM_DEFINITION
 * with a line in err, -ENOMEM.
 */
int cairn_config_fsm_build(const cairn_config_fsm_t *fsm,
                           struct cairn_fsm_def **out, char *err,
                           size_t errlen);

/* "read", "append", "admin"; "?" for anything else.  Static storage. */
const char *cairn_config_role_name(cairn_role_t role);

#endif
