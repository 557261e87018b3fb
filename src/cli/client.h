/*
 * client.h — `cairn append`, `cairn read` and `cairn state`: the commands
 * that talk HTTP to a running `cairn serve` (src/cli/client.c).
 *
 * The cairn_cmd_* entry points (declared in cli/cli.h) use stdin, stdout
 * and stderr; the cairn__client_* functions below take the streams as
 * parameters so tests can run a command against a fake server and read
 * what it printed.  Exit codes: 0 success, 1 failure (an HTTP error
 * status, a refused connection, bad input on stdin), 2 usage error.
 */
#ifndef CAIRN_CLI_CLIENT_H
#define CAIRN_CLI_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CAIRN_CLIENT_DEFAULT_URL "http://127.0.0.1:7070"

/* The streams a command reads and writes (borrowed). */
typedef struct cairn_client_io {
    FILE *in;  /* NDJSON for `append` without --type */
    FILE *out; /* replies and events */
    FILE *err; /* "cairn: <what>: <why>" lines */
} cairn_client_io_t;

int cairn__client_append(int argc, char **argv, const cairn_client_io_t *io);
int cairn__client_read(int argc, char **argv, const cairn_client_io_t *io);
int cairn__client_state(int argc, char **argv, const cairn_client_io_t *io);

/* Parsed `cairn read` arguments (strings borrowed from argv). */
typedef struct cairn_read_args {
    const char *url;
    const char *token;
    const char *from_seq;  /* digits, or NULL */
    const char *from_time; /* RFC 3339, or NULL */
    const char *stream;
    const char *prefix;
    const char *types; /* "T[,T...]" */
    uint64_t limit;    /* 0 = no limit */
    int follow;
    int help;
} cairn_read_args_t;

/* Parse argv (argv[0] is "read").  Returns 0, or 2 with a reason in err. */
int cairn__client_parse_read(int argc, char **argv, cairn_read_args_t *a,
                             char *err, size_t errlen);

/*
 * The URL of one request of `cairn read`: GET /v1/events (follow 0) or
 * /v1/subscribe (follow 1) with the filters as query parameters.  A
 * from_seq of non-zero overrides a->from_seq and a->from_time (paging);
 * page_limit non-zero adds limit=.  Returns the length, or -1 when out is
 * too small.
 */
int cairn__client_read_url(const cairn_read_args_t *a, int follow,
                           uint64_t from_seq, uint64_t page_limit, char *out,
                           size_t outlen);

/*
 * Percent-encode every byte of in[0..len) except the unreserved characters
 * of RFC 3986 (A-Z a-z 0-9 - . _ ~), so a stream name is one path segment
 * and a value is one query parameter.  Writes a NUL-terminated string.
 * Returns the encoded length, or -1 when out is too small.
 */
int cairn__client_escape(const char *in, size_t len, char *out,
                         size_t outlen);

#endif
