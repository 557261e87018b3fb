/* cli.h — shared pieces of the `cairn` command-line tool. */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

/* Print "cairn: <what>: <why>" on stderr (one line). */
void cairn_cli_error(const char *what, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int cairn_cmd_bench(int argc, char **argv);
int cairn_cmd_verify(int argc, char **argv);
/* HTTP clients of `cairn serve` (src/cli/client.c). */
int cairn_cmd_append(int argc, char **argv);
int cairn_cmd_read(int argc, char **argv);
int cairn_cmd_state(int argc, char **argv);

#endif
