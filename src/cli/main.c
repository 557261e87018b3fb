/*
 * main.c — the `cairn` command-line tool: dispatches to one command.
 * Exit codes: 0 success, 1 failure, 2 usage error.  Errors are one line on
 * stderr: "cairn: <what failed>: <why>".
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cairn/cairn.h"
#include "cli/cli.h"
#include "server/server.h"

void cairn_cli_error(const char *what, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cairn: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cairn version\n  Prints the version.\n");
        return 0;
    }
    if (argc > 1) {
        cairn_cli_error("version", "unexpected argument '%s'", argv[1]);
        return 2;
    }
    printf("cairn %s\n", cairn_version());
    return 0;
}

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} commands[] = {
    {"append", cairn_cmd_append, "append events to a stream of a server"},
    {"bench", cairn_cmd_bench, "run the benchmark suite"},
    {"read", cairn_cmd_read, "print a server's events as NDJSON"},
    {"serve", cairn_cmd_serve, "run the server"},
    {"state", cairn_cmd_state, "print a stream's state from a server"},
    {"verify", cairn_cmd_verify, "check a data directory offline"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cairn <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`cairn <command> --help` describes one command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(1, argv);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    cairn_cli_error(argv[1], "unknown command (see cairn --help)");
    return 2;
}
