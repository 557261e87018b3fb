/*
 * bench_main.c — `cairn bench [--quick] [--json FILE]`: runs every suite in
 * bench/suites.h, shows progress on stderr, prints a results table and
 * optionally writes the JSON document of the brief's contract:
 *   {"machine":{...},"results":[{"name","unit","value","baseline",
 *    "baseline_value","ratio"}]}
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cairn/cairn.h"
#include "cli/cli.h"
#include "suites.h"

typedef struct bench_result {
    char *name;
    char *unit;
    double value;
    char *baseline;
    double baseline_value;
    double ratio;
    char *skipped; /* reason, or NULL */
} bench_result_t;

struct cairn_bench {
    int quick;
    const char *only; /* run suites/results whose name starts with this */
    bench_result_t *results;
    size_t n, cap;
};

int cairn_bench_quick(const cairn_bench_t *b) { return b->quick; }

void cairn_bench_progress(cairn_bench_t *b, const char *what)
{
    (void)b;
    fprintf(stderr, "  ... %s\n", what);
}

uint64_t cairn_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int unit_is_time(const char *unit)
{
    return !strcmp(unit, "ns") || !strcmp(unit, "us") || !strcmp(unit, "ms") ||
           !strcmp(unit, "s");
}

static bench_result_t *push(cairn_bench_t *b)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 32;
        b->results = realloc(b->results, b->cap * sizeof *b->results);
        if (!b->results) {
            perror("cairn: bench");
            exit(1);
        }
    }
    bench_result_t *r = &b->results[b->n++];
    memset(r, 0, sizeof *r);
    return r;
}

void cairn_bench_report(cairn_bench_t *b, const char *name, const char *unit,
                        double value, const char *baseline_name,
                        double baseline_value)
{
    bench_result_t *r = push(b);
    r->name = strdup(name);
    r->unit = strdup(unit);
    r->value = value;
    r->baseline = baseline_name ? strdup(baseline_name) : NULL;
    r->baseline_value = baseline_value;
    if (baseline_name && baseline_value > 0 && value > 0)
        r->ratio = unit_is_time(unit) ? baseline_value / value
                                      : value / baseline_value;
    fprintf(stderr, "  %-44s %14.2f %-9s", name, value, unit);
    if (r->baseline)
        fprintf(stderr, " (%.2fx vs %s)", r->ratio, r->baseline);
    fputc('\n', stderr);
}

void cairn_bench_skip(cairn_bench_t *b, const char *name, const char *why)
{
    bench_result_t *r = push(b);
    r->name = strdup(name);
    r->unit = strdup("");
    r->skipped = strdup(why);
    fprintf(stderr, "  %-44s skipped: %s\n", name, why);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void machine_json(FILE *f)
{
    struct utsname u;
    uname(&u);
    char cpu[256] = "unknown";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[512];
        while (fgets(line, sizeof line, ci)) {
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(cpu, sizeof cpu, "%s", c + 2);
                    cpu[strcspn(cpu, "\n")] = 0;
                }
                break;
            }
        }
        fclose(ci);
    }
    fprintf(f, "{\"os\":");
    json_str(f, u.sysname);
    fprintf(f, ",\"kernel\":");
    json_str(f, u.release);
    fprintf(f, ",\"arch\":");
    json_str(f, u.machine);
    fprintf(f, ",\"cpu\":");
    json_str(f, cpu);
    fprintf(f, ",\"cores\":%ld,\"cairn\":", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, cairn_version());
    fprintf(f, "}");
}

static int write_json(const cairn_bench_t *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"machine\":");
    machine_json(f);
    fprintf(f, ",\"results\":[");
    for (size_t i = 0; i < b->n; i++) {
        const bench_result_t *r = &b->results[i];
        fprintf(f, "%s\n{\"name\":", i ? "," : "");
        json_str(f, r->name);
        fprintf(f, ",\"unit\":");
        json_str(f, r->unit);
        if (r->skipped) {
            fprintf(f, ",\"value\":null,\"baseline\":null,\"ratio\":null,"
                       "\"skipped\":");
            json_str(f, r->skipped);
        } else {
            fprintf(f, ",\"value\":%.6g,\"baseline\":", r->value);
            if (r->baseline) {
                json_str(f, r->baseline);
                fprintf(f, ",\"baseline_value\":%.6g,\"ratio\":%.4g",
                        r->baseline_value, r->ratio);
            } else {
                fprintf(f, "null,\"ratio\":null");
            }
        }
        fputc('}', f);
    }
    fprintf(f, "\n]}\n");
    return fclose(f);
}

#define DECLARE_SUITE(name) void cairn_bench_suite_##name(cairn_bench_t *b);
CAIRN_BENCH_SUITES(DECLARE_SUITE)
#undef DECLARE_SUITE

static const struct {
    const char *name;
    void (*run)(cairn_bench_t *);
} suites[] = {
#define SUITE_ENTRY(name) {#name, cairn_bench_suite_##name},
    CAIRN_BENCH_SUITES(SUITE_ENTRY)
#undef SUITE_ENTRY
};

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: cairn bench [--quick] [--json FILE] [--only SUITE]\n"
               "  Runs the benchmark suites and prints a results table.\n"
               "  --quick       fewer iterations (finishes within 5 minutes)\n"
               "  --json FILE   also write the results as JSON\n"
               "  --only SUITE  run one suite (");
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++)
        fprintf(f, "%s%s", i ? ", " : "", suites[i].name);
    fprintf(f, ")\n");
}

int cairn_cmd_bench(int argc, char **argv)
{
    cairn_bench_t b = {0};
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            b.quick = 1;
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            b.only = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            bench_usage(stdout);
            return 0;
        } else {
            cairn_cli_error("bench", "unknown argument '%s'", argv[i]);
            bench_usage(stderr);
            return 2;
        }
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
        if (b.only && strcmp(b.only, suites[i].name))
            continue;
        fprintf(stderr, "[%zu/%zu] %s\n", i + 1,
                sizeof suites / sizeof suites[0], suites[i].name);
        suites[i].run(&b);
        ran++;
    }
    if (!ran) {
        cairn_cli_error("bench", "no suite named '%s'", b.only);
        return 2;
    }
    printf("%-44s %14s %-9s %9s  %s\n", "benchmark", "value", "unit", "ratio",
           "baseline");
    for (size_t i = 0; i < b.n; i++) {
        const bench_result_t *r = &b.results[i];
        if (r->skipped) {
            printf("%-44s %14s %-9s %9s  skipped: %s\n", r->name, "-", "", "-",
                   r->skipped);
            continue;
        }
        printf("%-44s %14.2f %-9s ", r->name, r->value, r->unit);
        if (r->baseline)
            printf("%8.2fx  %s\n", r->ratio, r->baseline);
        else
            printf("%9s\n", "-");
    }
    int rc = 0;
    if (json && write_json(&b, json) != 0) {
        cairn_cli_error("bench", "cannot write %s", json);
        rc = 1;
    }
    for (size_t i = 0; i < b.n; i++) {
        free(b.results[i].name);
        free(b.results[i].unit);
        free(b.results[i].baseline);
        free(b.results[i].skipped);
    }
    free(b.results);
    return rc;
}
