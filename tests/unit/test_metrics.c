/*
 * test_metrics.c — unit tests of the metrics module: the conformance suite
 * (every *_seqlock case has a *_standard twin running the same assertions
 * against the rwlock provider), name rules and registration errors,
 * exposition (golden output, promtool, JSON), negotiation, the timer, the
 * read statistics and the public seqlock.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "cairn/metrics.h"
#include "cairn/seqlock.h"
#include "metrics/metrics_internal.h"
#include "test.h"

static const cairn_metrics_provider_t P_SEQLOCK = CAIRN_METRICS_SEQLOCK;
static const cairn_metrics_provider_t P_STANDARD = CAIRN_METRICS_STANDARD;

static cairn_metrics_t *new_reg(void **state, int no_builtin)
{
    cairn_metrics_opts_t o = {0};
    o.provider = *(const cairn_metrics_provider_t *)*state;
    o.no_builtin = no_builtin;
    cairn_metrics_t *reg = NULL;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    assert_int_equal(cairn_metrics_provider(reg), o.provider);
    return reg;
}

static char *export_str(cairn_metrics_t *reg, cairn_metrics_format_t fmt)
{
    cairn_metrics_buf_t buf = {0};
    assert_int_equal(cairn_metrics_export(reg, fmt, &buf), 0);
    assert_non_null(buf.data);
    assert_int_equal(strlen(buf.data), buf.len);
    return buf.data; /* caller frees */
}

/* ---- conformance: both providers -------------------------------------- */

static void counter_ops(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    cairn_metrics_counter_t *c, *again;
    assert_int_equal(cairn_metrics_counter(reg, "jobs_total", "Jobs.", &c), 0);
    assert_int_equal(cairn_metrics_counter_value(c), 0);
    cairn_metrics_counter_inc(c);
    cairn_metrics_counter_add(c, 41);
    assert_int_equal(cairn_metrics_counter_value(c), 42);
    /* get-or-create is idempotent: the same child comes back. */
    assert_int_equal(cairn_metrics_counter(reg, "jobs_total", "Jobs.", &again),
                     0);
    assert_ptr_equal(again, c);
    cairn_metrics_counter_add(again, UINT64_C(1) << 40);
    assert_int_equal(cairn_metrics_counter_value(c), (UINT64_C(1) << 40) + 42);
    cairn_metrics_destroy(reg);
}

static void gauge_ops(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    cairn_metrics_gauge_t *g;
    cairn_metrics_gauge_f64_t *f;
    assert_int_equal(cairn_metrics_gauge(reg, "depth", "Depth.", &g), 0);
    assert_int_equal(cairn_metrics_gauge_value(g), 0);
    cairn_metrics_gauge_set(g, -5);
    cairn_metrics_gauge_inc(g);
    cairn_metrics_gauge_add(g, 10);
    cairn_metrics_gauge_dec(g);
    assert_int_equal(cairn_metrics_gauge_value(g), 5);
    cairn_metrics_gauge_set(g, INT64_MIN);
    assert_true(cairn_metrics_gauge_value(g) == INT64_MIN);

    assert_int_equal(cairn_metrics_gauge_f64(reg, "ratio", "Ratio.", &f), 0);
    assert_true(cairn_metrics_gauge_f64_value(f) == 0.0);
    cairn_metrics_gauge_f64_set(f, 0.25);
    cairn_metrics_gauge_f64_add(f, 0.5);
    assert_true(cairn_metrics_gauge_f64_value(f) == 0.75);
    cairn_metrics_gauge_f64_set(f, NAN);
    assert_true(isnan(cairn_metrics_gauge_f64_value(f)));
    cairn_metrics_gauge_f64_set(f, -INFINITY);
    assert_true(cairn_metrics_gauge_f64_value(f) == -INFINITY);
    cairn_metrics_destroy(reg);
}

static void histogram_ops(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    static const double bounds[] = {1, 2, 4};
    cairn_metrics_histogram_t *h;
    assert_int_equal(
        cairn_metrics_histogram(reg, "size_bytes", "Sizes.", bounds, 3, &h), 0);
    cairn_metrics_histogram_snapshot_t s;
    cairn_metrics_histogram_snapshot(h, &s);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.bucket_count, 3);

    cairn_metrics_histogram_observe(h, 0.5);      /* bucket 0 */
    cairn_metrics_histogram_observe(h, 1.0);      /* le is inclusive: 0 */
    cairn_metrics_histogram_observe(h, 1.5);      /* 1 */
    cairn_metrics_histogram_observe(h, 4.0);      /* 2 */
    cairn_metrics_histogram_observe(h, 100.0);    /* +Inf */
    cairn_metrics_histogram_observe(h, -INFINITY); /* 0 */
    cairn_metrics_histogram_observe(h, INFINITY); /* +Inf */
    cairn_metrics_histogram_snapshot(h, &s);
    assert_int_equal(s.counts[0], 3);
    assert_int_equal(s.counts[1], 1);
    assert_int_equal(s.counts[2], 1);
    assert_int_equal(s.counts[3], 2);
    assert_int_equal(s.count, 7);
    assert_true(isnan(s.sum)); /* -Inf + +Inf */
    assert_true(s.bounds[1] == 2.0);

    cairn_metrics_histogram_t *n;
    assert_int_equal(
        cairn_metrics_histogram(reg, "nan_seconds", "NaN.", bounds, 3, &n), 0);
    cairn_metrics_histogram_observe(n, NAN); /* NaN goes to +Inf only */
    cairn_metrics_histogram_observe(n, 2.0);
    cairn_metrics_histogram_snapshot(n, &s);
    assert_int_equal(s.counts[3], 1);
    assert_int_equal(s.counts[1], 1);
    assert_int_equal(s.count, 2);
    assert_true(isnan(s.sum));
    cairn_metrics_destroy(reg);
}

static void family_children(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    static const char *const names[] = {"route", "status"};
    cairn_metrics_desc_t d = {.type = CAIRN_METRICS_COUNTER,
                              .name = "http_requests_total",
                              .help = "Requests.",
                              .label_names = names,
                              .label_count = 2};
    cairn_metrics_family_t *fam, *fam2;
    assert_int_equal(cairn_metrics_register(reg, &d, &fam), 0);
    assert_int_equal(cairn_metrics_register(reg, &d, &fam2), 0);
    assert_ptr_equal(fam, fam2);

    const char *const a[] = {"/v1/events", "201"};
    const char *const b[] = {"/v1/events", "409"};
    char route[32], status[8];
    const char *const a_copy[] = {route, status};
    snprintf(route, sizeof(route), "/v1/events");
    snprintf(status, sizeof(status), "201");
    cairn_metrics_counter_t *ca, *cb, *ca2;
    assert_int_equal(cairn_metrics_counter_child(fam, a, &ca), 0);
    assert_int_equal(cairn_metrics_counter_child(fam, b, &cb), 0);
    assert_ptr_not_equal(ca, cb);
    /* Values are compared, not pointers, and were copied. */
    assert_int_equal(cairn_metrics_counter_child(fam, a_copy, &ca2), 0);
    assert_ptr_equal(ca, ca2);
    snprintf(route, sizeof(route), "changed");
    cairn_metrics_counter_inc(ca);
    cairn_metrics_counter_add(cb, 2);
    assert_int_equal(cairn_metrics_counter_value(ca), 1);
    assert_int_equal(cairn_metrics_counter_value(cb), 2);

    /* A child of another type from this family is a type mismatch. */
    cairn_metrics_histogram_t *h;
    assert_int_equal(cairn_metrics_histogram_child(fam, a, &h),
                     CAIRN_EMETRIC_TYPE_MISMATCH);

    /* Thousands of children: each found again, each distinct. */
    static cairn_metrics_counter_t *kids[5000];
    for (int i = 0; i < 5000; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        const char *const vals[] = {"/bulk", v};
        assert_int_equal(cairn_metrics_counter_child(fam, vals, &kids[i]), 0);
        cairn_metrics_counter_add(kids[i], (uint64_t)i);
    }
    for (int i = 0; i < 5000; i += 7) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        const char *const vals[] = {"/bulk", v};
        cairn_metrics_counter_t *k;
        assert_int_equal(cairn_metrics_counter_child(fam, vals, &k), 0);
        assert_ptr_equal(k, kids[i]);
        assert_int_equal(cairn_metrics_counter_value(k), (uint64_t)i);
    }
    cairn_metrics_destroy(reg);
}

static void max_series_full(void **state)
{
    cairn_metrics_opts_t o = {0};
    o.provider = *(const cairn_metrics_provider_t *)*state;
    o.max_series = 3;
    cairn_metrics_t *reg;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    static const char *const names[] = {"k"};
    cairn_metrics_desc_t d = {.type = CAIRN_METRICS_GAUGE,
                              .name = "g",
                              .label_names = names,
                              .label_count = 1};
    cairn_metrics_family_t *fam;
    assert_int_equal(cairn_metrics_register(reg, &d, &fam), 0);
    cairn_metrics_gauge_t *g;
    const char *const v1[] = {"1"}, *const v2[] = {"2"}, *const v3[] = {"3"},
                      *const v4[] = {"4"};
    assert_int_equal(cairn_metrics_gauge_child(fam, v1, &g), 0);
    assert_int_equal(cairn_metrics_gauge_child(fam, v2, &g), 0);
    assert_int_equal(cairn_metrics_gauge_child(fam, v3, &g), 0);
    assert_int_equal(cairn_metrics_gauge_child(fam, v4, &g),
                     CAIRN_EMETRIC_FULL);
    /* Existing children are still found when full. */
    assert_int_equal(cairn_metrics_gauge_child(fam, v2, &g), 0);
    cairn_metrics_destroy(reg);
}

typedef struct counter_job {
    cairn_metrics_counter_t *c;
    cairn_metrics_histogram_t *h;
    int n;
} counter_job_t;

static void *counter_worker(void *arg)
{
    counter_job_t *j = arg;
    for (int i = 0; i < j->n; i++) {
        cairn_metrics_counter_inc(j->c);
        cairn_metrics_histogram_observe(j->h, (double)(i % 4));
    }
    return NULL;
}

static void concurrent_updates(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    static const double bounds[] = {0, 1, 2};
    counter_job_t job = {.n = 20000};
    assert_int_equal(cairn_metrics_counter(reg, "c_total", "C.", &job.c), 0);
    assert_int_equal(cairn_metrics_histogram(reg, "h", "H.", bounds, 3, &job.h),
                     0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, counter_worker, &job), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(cairn_metrics_counter_value(job.c), 4 * 20000);
    cairn_metrics_histogram_snapshot_t s;
    cairn_metrics_histogram_snapshot(job.h, &s);
    assert_int_equal(s.count, 4 * 20000);
    for (int b = 0; b < 3; b++)
        assert_int_equal(s.counts[b], 20000);
    assert_int_equal(s.counts[3], 20000);
    /* 4 threads x 5000 rounds x (0+1+2+3): exact in a double. */
    assert_true(s.sum == 4.0 * 5000 * 6);
    cairn_metrics_destroy(reg);
}

/* The registry of the golden tests: every kind, labels needing escapes,
 * a help with quote, backslash and newline, awkward doubles. */
static cairn_metrics_t *golden_registry(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    static const char *const rc[] = {"route", "code"};
    cairn_metrics_desc_t d = {.type = CAIRN_METRICS_COUNTER,
                              .name = "cairn_test_requests_total",
                              .help = "Requests by route.",
                              .label_names = rc,
                              .label_count = 2};
    cairn_metrics_family_t *fam;
    cairn_metrics_counter_t *c;
    assert_int_equal(cairn_metrics_register(reg, &d, &fam), 0);
    const char *const v1[] = {"/v1/events", "200"};
    const char *const v2[] = {"/a\"b\\c\nd", "500"};
    assert_int_equal(cairn_metrics_counter_child(fam, v1, &c), 0);
    cairn_metrics_counter_add(c, 3);
    assert_int_equal(cairn_metrics_counter_child(fam, v2, &c), 0);
    cairn_metrics_counter_inc(c);

    /* A family without children is not exported. */
    cairn_metrics_desc_t empty = {.type = CAIRN_METRICS_GAUGE,
                                  .name = "cairn_test_unused",
                                  .help = "Never set.",
                                  .label_names = rc,
                                  .label_count = 2};
    assert_int_equal(cairn_metrics_register(reg, &empty, NULL), 0);

    cairn_metrics_gauge_t *g;
    assert_int_equal(cairn_metrics_gauge(reg, "cairn_test_queue_depth",
                                         "Queue \"depth\".\nSecond line with "
                                         "\\ backslash.",
                                         &g),
                     0);
    cairn_metrics_gauge_set(g, -7);

    static const char *const kind[] = {"kind"};
    cairn_metrics_desc_t rd = {.type = CAIRN_METRICS_GAUGE_F64,
                               .name = "cairn_test_ratio",
                               .help = "",
                               .label_names = kind,
                               .label_count = 1};
    assert_int_equal(cairn_metrics_register(reg, &rd, &fam), 0);
    static const struct {
        const char *k;
        double v;
    } ratios[] = {{"third", 1.0 / 3}, {"tenth", 0.1},   {"nan", NAN},
                  {"inf", INFINITY},  {"ninf", -INFINITY}, {"big", 1e300},
                  {"exact", 123456789.125}, {"whole", -2.0}};
    for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
        const char *const v[] = {ratios[i].k};
        cairn_metrics_gauge_f64_t *f;
        assert_int_equal(cairn_metrics_gauge_f64_child(fam, v, &f), 0);
        cairn_metrics_gauge_f64_set(f, ratios[i].v);
    }

    static const char *const op[] = {"op"};
    static const double bounds[] = {0.005, 0.1, 1, 2.5};
    cairn_metrics_desc_t hd = {.type = CAIRN_METRICS_HISTOGRAM,
                               .name = "cairn_test_latency_seconds",
                               .help = "Latency.",
                               .label_names = op,
                               .label_count = 1,
                               .buckets = bounds,
                               .bucket_count = 4};
    assert_int_equal(cairn_metrics_register(reg, &hd, &fam), 0);
    cairn_metrics_histogram_t *h;
    const char *const rv[] = {"read"};
    assert_int_equal(cairn_metrics_histogram_child(fam, rv, &h), 0);
    /* Sum 4.56640625 exactly (powers of two). */
    cairn_metrics_histogram_observe(h, 0.00390625);
    cairn_metrics_histogram_observe(h, 0.0625);
    cairn_metrics_histogram_observe(h, 0.5);
    cairn_metrics_histogram_observe(h, 3);
    cairn_metrics_histogram_observe(h, 1);

    assert_int_equal(cairn_metrics_counter(reg, "cairn_test_bytes", "Bytes.",
                                           &c),
                     0);
    cairn_metrics_counter_add(c, 42);
    return reg;
}

static const char golden_prometheus[] =
    "# HELP cairn_test_requests_total Requests by route.\n"
    "# TYPE cairn_test_requests_total counter\n"
    "cairn_test_requests_total{route=\"/v1/events\",code=\"200\"} 3\n"
    "cairn_test_requests_total{route=\"/a\\\"b\\\\c\\nd\",code=\"500\"} 1\n"
    "# HELP cairn_test_queue_depth Queue \"depth\".\\nSecond line with \\\\ "
    "backslash.\n"
    "# TYPE cairn_test_queue_depth gauge\n"
    "cairn_test_queue_depth -7\n"
    "# TYPE cairn_test_ratio gauge\n"
    "cairn_test_ratio{kind=\"third\"} 0.3333333333333333\n"
    "cairn_test_ratio{kind=\"tenth\"} 0.1\n"
    "cairn_test_ratio{kind=\"nan\"} NaN\n"
    "cairn_test_ratio{kind=\"inf\"} +Inf\n"
    "cairn_test_ratio{kind=\"ninf\"} -Inf\n"
    "cairn_test_ratio{kind=\"big\"} 1e+300\n"
    "cairn_test_ratio{kind=\"exact\"} 123456789.125\n"
    "cairn_test_ratio{kind=\"whole\"} -2\n"
    "# HELP cairn_test_latency_seconds Latency.\n"
    "# TYPE cairn_test_latency_seconds histogram\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"0.005\"} 1\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"0.1\"} 2\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"1\"} 4\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"2.5\"} 4\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 5\n"
    "cairn_test_latency_seconds_sum{op=\"read\"} 4.56640625\n"
    "cairn_test_latency_seconds_count{op=\"read\"} 5\n"
    "# HELP cairn_test_bytes Bytes.\n"
    "# TYPE cairn_test_bytes counter\n"
    "cairn_test_bytes 42\n";

static const char golden_openmetrics[] =
    "# HELP cairn_test_requests Requests by route.\n"
    "# TYPE cairn_test_requests counter\n"
    "cairn_test_requests_total{route=\"/v1/events\",code=\"200\"} 3\n"
    "cairn_test_requests_total{route=\"/a\\\"b\\\\c\\nd\",code=\"500\"} 1\n"
    "# HELP cairn_test_queue_depth Queue \\\"depth\\\".\\nSecond line with "
    "\\\\ backslash.\n"
    "# TYPE cairn_test_queue_depth gauge\n"
    "cairn_test_queue_depth -7\n"
    "# TYPE cairn_test_ratio gauge\n"
    "cairn_test_ratio{kind=\"third\"} 0.3333333333333333\n"
    "cairn_test_ratio{kind=\"tenth\"} 0.1\n"
    "cairn_test_ratio{kind=\"nan\"} NaN\n"
    "cairn_test_ratio{kind=\"inf\"} +Inf\n"
    "cairn_test_ratio{kind=\"ninf\"} -Inf\n"
    "cairn_test_ratio{kind=\"big\"} 1e+300\n"
    "cairn_test_ratio{kind=\"exact\"} 123456789.125\n"
    "cairn_test_ratio{kind=\"whole\"} -2\n"
    "# HELP cairn_test_latency_seconds Latency.\n"
    "# TYPE cairn_test_latency_seconds histogram\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"0.005\"} 1\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"0.1\"} 2\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"1.0\"} 4\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"2.5\"} 4\n"
    "cairn_test_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 5\n"
    "cairn_test_latency_seconds_sum{op=\"read\"} 4.56640625\n"
    "cairn_test_latency_seconds_count{op=\"read\"} 5\n"
    "# HELP cairn_test_bytes Bytes.\n"
    "# TYPE cairn_test_bytes counter\n"
    "cairn_test_bytes_total 42\n"
    "# EOF\n";

static const char golden_json[] =
    "{\"metrics\":["
    "{\"name\":\"cairn_test_requests_total\",\"type\":\"counter\","
    "\"help\":\"Requests by route.\",\"series\":["
    "{\"labels\":{\"route\":\"/v1/events\",\"code\":\"200\"},\"value\":3},"
    "{\"labels\":{\"route\":\"/a\\\"b\\\\c\\nd\",\"code\":\"500\"},"
    "\"value\":1}]},"
    "{\"name\":\"cairn_test_queue_depth\",\"type\":\"gauge\","
    "\"help\":\"Queue \\\"depth\\\".\\nSecond line with \\\\ backslash.\","
    "\"series\":[{\"labels\":{},\"value\":-7}]},"
    "{\"name\":\"cairn_test_ratio\",\"type\":\"gauge\",\"help\":\"\","
    "\"series\":["
    "{\"labels\":{\"kind\":\"third\"},\"value\":0.3333333333333333},"
    "{\"labels\":{\"kind\":\"tenth\"},\"value\":0.1},"
    "{\"labels\":{\"kind\":\"nan\"},\"value\":\"NaN\"},"
    "{\"labels\":{\"kind\":\"inf\"},\"value\":\"+Inf\"},"
    "{\"labels\":{\"kind\":\"ninf\"},\"value\":\"-Inf\"},"
    "{\"labels\":{\"kind\":\"big\"},\"value\":1e+300},"
    "{\"labels\":{\"kind\":\"exact\"},\"value\":123456789.125},"
    "{\"labels\":{\"kind\":\"whole\"},\"value\":-2}]},"
    "{\"name\":\"cairn_test_latency_seconds\",\"type\":\"histogram\","
    "\"help\":\"Latency.\",\"series\":[{\"labels\":{\"op\":\"read\"},"
    "\"buckets\":[{\"le\":0.005,\"count\":1},{\"le\":0.1,\"count\":2},"
    "{\"le\":1,\"count\":4},{\"le\":2.5,\"count\":4},"
    "{\"le\":\"+Inf\",\"count\":5}],\"sum\":4.56640625,\"count\":5}]},"
    "{\"name\":\"cairn_test_bytes\",\"type\":\"counter\",\"help\":\"Bytes.\","
    "\"series\":[{\"labels\":{},\"value\":42}]}"
    "]}\n";

static void golden_exports(void **state)
{
    cairn_metrics_t *reg = golden_registry(state);
    char *out = export_str(reg, CAIRN_METRICS_PROMETHEUS);
    assert_string_equal(out, golden_prometheus);
    free(out);
    out = export_str(reg, CAIRN_METRICS_OPENMETRICS);
    assert_string_equal(out, golden_openmetrics);
    free(out);
    out = export_str(reg, CAIRN_METRICS_JSON);
    assert_string_equal(out, golden_json);
    /* And it is JSON a strict parser accepts. */
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "metrics")), 5);
    json_decref(doc);
    free(out);
    cairn_metrics_destroy(reg);
}

/* An export appends to what the buffer holds; a fixed buffer that is too
 * small fails cleanly and keeps its previous content. */
static void export_buffers(void **state)
{
    cairn_metrics_t *reg = golden_registry(state);
    char small[64];
    cairn_metrics_buf_t fixed = {.data = small, .cap = sizeof(small),
                                 .fixed = 1};
    memcpy(small, "keep", 5);
    fixed.len = 4;
    assert_int_equal(cairn_metrics_export(reg, CAIRN_METRICS_PROMETHEUS, &fixed),
                     CAIRN_EMETRIC_BUFFER);
    assert_int_equal(fixed.len, 4);
    assert_string_equal(small, "keep");

    static char big[8192];
    cairn_metrics_buf_t fits = {.data = big, .cap = sizeof(big), .fixed = 1};
    assert_int_equal(cairn_metrics_export(reg, CAIRN_METRICS_PROMETHEUS, &fits),
                     0);
    assert_string_equal(big, golden_prometheus);

    cairn_metrics_buf_t grow = {0};
    assert_int_equal(cairn_metrics_export(reg, CAIRN_METRICS_PROMETHEUS, &grow),
                     0);
    assert_int_equal(cairn_metrics_export(reg, CAIRN_METRICS_PROMETHEUS, &grow),
                     0);
    assert_int_equal(grow.len, 2 * strlen(golden_prometheus));
    assert_memory_equal(grow.data + grow.len / 2, golden_prometheus,
                        grow.len / 2);
    assert_int_equal(cairn_metrics_export(reg, (cairn_metrics_format_t)9, &grow),
                     CAIRN_EBAD_OPTION);
    cairn_metrics_buf_free(&grow);
    assert_null(grow.data);
    cairn_metrics_buf_free(NULL);
    cairn_metrics_destroy(reg);

    /* An empty registry still yields a valid (empty) string. */
    reg = new_reg(state, 1);
    char *out = export_str(reg, CAIRN_METRICS_PROMETHEUS);
    assert_string_equal(out, "");
    free(out);
    out = export_str(reg, CAIRN_METRICS_OPENMETRICS);
    assert_string_equal(out, "# EOF\n");
    free(out);
    out = export_str(reg, CAIRN_METRICS_JSON);
    assert_string_equal(out, "{\"metrics\":[]}\n");
    free(out);
    cairn_metrics_destroy(reg);
}

static void timer_once(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    static const double bounds[] = {0.001, 10};
    cairn_metrics_histogram_t *h;
    assert_int_equal(
        cairn_metrics_histogram(reg, "op_seconds", "Ops.", bounds, 2, &h), 0);
    cairn_metrics_histogram_snapshot_t s;

    cairn_metrics_timer_t t;
    cairn_metrics_timer_start(&t, h);
    double secs = -1;
    assert_int_equal(cairn_metrics_timer_stop(&t, &secs), 1);
    assert_true(secs >= 0 && secs < 10);
    assert_int_equal(cairn_metrics_timer_stop(&t, NULL), 0); /* twice: once */
    cairn_metrics_timer_cleanup(&t);                         /* and again */
    cairn_metrics_histogram_snapshot(h, &s);
    assert_int_equal(s.count, 1);

    /* Discarded: records nothing, and a later stop records nothing. */
    cairn_metrics_timer_start(&t, h);
    assert_int_equal(cairn_metrics_timer_discard(&t), 1);
    assert_int_equal(cairn_metrics_timer_stop(&t, NULL), 0);
    assert_int_equal(cairn_metrics_timer_discard(&t), 0);
    cairn_metrics_histogram_snapshot(h, &s);
    assert_int_equal(s.count, 1);

    /* Scoped: records when the scope is left, even by an early exit. */
    for (int i = 0; i < 3; i++) {
        CAIRN_METRICS_TIMER_SCOPED(scoped, h);
        if (i == 1)
            continue;
        if (i == 2) {
            /* Stopped explicitly inside the scope: the exit adds nothing. */
            assert_int_equal(cairn_metrics_timer_stop(&scoped, NULL), 1);
        }
    }
    cairn_metrics_histogram_snapshot(h, &s);
    assert_int_equal(s.count, 4);
    cairn_metrics_destroy(reg);
}

typedef struct stop_race {
    cairn_metrics_timer_t *t;
    pthread_barrier_t *go;
    int won;
} stop_race_t;

static void *stop_racer(void *arg)
{
    stop_race_t *r = arg;
    pthread_barrier_wait(r->go);
    r->won = cairn_metrics_timer_stop(r->t, NULL);
    return NULL;
}

/* Two threads stopping the same timer at once: exactly one records. */
static void timer_stop_race(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 1);
    static const double bounds[] = {1};
    cairn_metrics_histogram_t *h;
    assert_int_equal(
        cairn_metrics_histogram(reg, "race_seconds", "Race.", bounds, 1, &h), 0);
    for (int round = 0; round < 200; round++) {
        cairn_metrics_timer_t t;
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        cairn_metrics_timer_start(&t, h);
        stop_race_t r[2] = {{&t, &go, 0}, {&t, &go, 0}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, stop_racer, &r[i]),
                             0);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        assert_int_equal(r[0].won + r[1].won, 1);
    }
    cairn_metrics_histogram_snapshot_t s;
    cairn_metrics_histogram_snapshot(h, &s);
    assert_int_equal(s.count, 200);
    cairn_metrics_destroy(reg);
}

static void read_stats_exported(void **state)
{
    cairn_metrics_t *reg = new_reg(state, 0);
    static const double bounds[] = {1};
    cairn_metrics_histogram_t *h;
    assert_int_equal(
        cairn_metrics_histogram(reg, "rs_seconds", "RS.", bounds, 1, &h), 0);
    cairn_metrics_read_stats_t st0, st;
    cairn_metrics_read_stats(reg, &st0);
    cairn_metrics_histogram_snapshot_t s;
    for (int i = 0; i < 200; i++)
        cairn_metrics_histogram_snapshot(h, &s);
    cairn_metrics_read_stats(reg, &st);
    assert_int_equal(st.reads - st0.reads, 200);
    /* No writer ran: every read took the fast path. */
    assert_int_equal(st.fast_path_reads - st0.fast_path_reads, 200);
    assert_int_equal(st.retries, 0);
    /* One read in CAIRN_METRICS_READ_TIMING_EVERY is timed. */
    assert_true(st.timed_reads - st0.timed_reads >=
                200 / CAIRN_METRICS_READ_TIMING_EVERY);

    usleep(20000);
    assert_true(cairn_metrics_uptime_seconds(reg) >= 0.02);
    char *out = export_str(reg, CAIRN_METRICS_PROMETHEUS);
    assert_non_null(strstr(out, "# TYPE cairn_uptime_seconds gauge\n"
                                "cairn_uptime_seconds "));
    assert_non_null(strstr(out, "\ncairn_metrics_reads_total 2"));
    assert_non_null(strstr(out, "\ncairn_metrics_reads_fast_path_total 2"));
    assert_non_null(strstr(out, "\ncairn_metrics_read_retries_total 0\n"));
    assert_non_null(strstr(out, "\ncairn_metrics_reads_timed_total "));
    assert_non_null(strstr(out, "\ncairn_metrics_read_timed_seconds_total "));
    free(out);
    out = export_str(reg, CAIRN_METRICS_OPENMETRICS);
    assert_non_null(strstr(out, "# TYPE cairn_metrics_reads counter\n"
                                "cairn_metrics_reads_total "));
    free(out);
    /* The built-in names are taken. */
    cairn_metrics_gauge_t *g;
    assert_int_equal(cairn_metrics_gauge(reg, "cairn_uptime_seconds", "x", &g),
                     CAIRN_EMETRIC_TYPE_MISMATCH);
    cairn_metrics_destroy(reg);
}

/* ---- registration rules (provider-independent) ------------------------- */

static int reg_counter(cairn_metrics_t *reg, const char *name,
                       const char *const *labels, size_t n)
{
    cairn_metrics_desc_t d = {.type = CAIRN_METRICS_COUNTER,
                              .name = name,
                              .help = "h",
                              .label_names = labels,
                              .label_count = n};
    return cairn_metrics_register(reg, &d, NULL);
}

static void name_validation(void **state)
{
    (void)state;
    cairn_metrics_t *reg;
    assert_int_equal(cairn_metrics_create(NULL, &reg), 0);
    assert_int_equal(reg_counter(reg, "ok_name:sub_total", NULL, 0), 0);
    assert_int_equal(reg_counter(reg, ":colon_first", NULL, 0), 0);
    assert_int_equal(reg_counter(reg, "_under", NULL, 0), 0);
    static const char *const bad[] = {"",     "1abc",  "a-b", "a b", "a.b",
                                      "é",    "a\nb",  "a{b", "a\"b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(reg_counter(reg, bad[i], NULL, 0),
                         CAIRN_EMETRIC_NAME);
    char longname[CAIRN_METRICS_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(reg_counter(reg, longname, NULL, 0), CAIRN_EMETRIC_NAME);
    longname[CAIRN_METRICS_NAME_MAX] = '\0';
    assert_int_equal(reg_counter(reg, longname, NULL, 0), 0);

    static const char *const good_labels[] = {"a", "_b", "C9"};
    assert_int_equal(reg_counter(reg, "lab_ok", good_labels, 3), 0);
    static const char *const bad_labels[] = {"",   "__reserved", "a:b", "1a",
                                             "a-b", "a b"};
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        const char *one[] = {bad_labels[i]};
        assert_int_equal(reg_counter(reg, "lab_bad", one, 1),
                         CAIRN_EMETRIC_LABEL_NAME);
    }
    static const char *const dup[] = {"x", "y", "x"};
    assert_int_equal(reg_counter(reg, "lab_dup", dup, 3),
                     CAIRN_EMETRIC_LABEL_NAME);
    const char *many[CAIRN_METRICS_LABELS_MAX + 1];
    char names[CAIRN_METRICS_LABELS_MAX + 1][16];
    for (int i = 0; i <= CAIRN_METRICS_LABELS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "l%d", i);
        many[i] = names[i];
    }
    assert_int_equal(reg_counter(reg, "lab_many", many,
                                 CAIRN_METRICS_LABELS_MAX + 1),
                     CAIRN_EMETRIC_TOO_MANY_LABELS);
    assert_int_equal(reg_counter(reg, "lab_max", many, CAIRN_METRICS_LABELS_MAX),
                     0);

    /* "le" is the histogram's own label; allowed elsewhere. */
    static const char *const le[] = {"le"};
    static const double b1[] = {1};
    cairn_metrics_desc_t hd = {.type = CAIRN_METRICS_HISTOGRAM,
                               .name = "h_le",
                               .label_names = le,
                               .label_count = 1,
                               .buckets = b1,
                               .bucket_count = 1};
    assert_int_equal(cairn_metrics_register(reg, &hd, NULL),
                     CAIRN_EMETRIC_LABEL_NAME);
    assert_int_equal(reg_counter(reg, "c_le", le, 1), 0);

    /* Buckets: 1..16 strictly increasing finite values. */
    double b[CAIRN_METRICS_BUCKETS_MAX + 1];
    for (int i = 0; i <= CAIRN_METRICS_BUCKETS_MAX; i++)
        b[i] = i;
    cairn_metrics_desc_t bd = {.type = CAIRN_METRICS_HISTOGRAM,
                               .name = "h_b",
                               .buckets = b,
                               .bucket_count = 0};
    assert_int_equal(cairn_metrics_register(reg, &bd, NULL),
                     CAIRN_EMETRIC_BUCKETS);
    bd.bucket_count = CAIRN_METRICS_BUCKETS_MAX + 1;
    assert_int_equal(cairn_metrics_register(reg, &bd, NULL),
                     CAIRN_EMETRIC_BUCKETS);
    static const double unsorted[] = {1, 3, 2};
    static const double repeated[] = {1, 1};
    static const double with_nan[] = {1, NAN};
    static const double with_inf[] = {1, INFINITY};
    const double *badb[] = {unsorted, repeated, with_nan, with_inf};
    const size_t badn[] = {3, 2, 2, 2};
    for (int i = 0; i < 4; i++) {
        bd.buckets = badb[i];
        bd.bucket_count = badn[i];
        assert_int_equal(cairn_metrics_register(reg, &bd, NULL),
                         CAIRN_EMETRIC_BUCKETS);
    }
    bd.buckets = b;
    bd.bucket_count = CAIRN_METRICS_BUCKETS_MAX;
    assert_int_equal(cairn_metrics_register(reg, &bd, NULL), 0);
    cairn_metrics_desc_t cb = {.type = CAIRN_METRICS_COUNTER,
                               .name = "c_b",
                               .buckets = b,
                               .bucket_count = 2};
    assert_int_equal(cairn_metrics_register(reg, &cb, NULL),
                     CAIRN_EMETRIC_BUCKETS);

    /* Help and label values must be UTF-8 and not too long. */
    cairn_metrics_counter_t *c;
    assert_int_equal(cairn_metrics_counter(reg, "bad_help", "\xff\xfe", &c),
                     CAIRN_EMETRIC_LABEL_VALUE);
    static const char *const k[] = {"k"};
    cairn_metrics_family_t *fam;
    cairn_metrics_desc_t kd = {.type = CAIRN_METRICS_COUNTER,
                               .name = "vals_total",
                               .label_names = k,
                               .label_count = 1};
    assert_int_equal(cairn_metrics_register(reg, &kd, &fam), 0);
    const char *const badv[] = {"\xc0\xaf"}; /* overlong '/' */
    assert_int_equal(cairn_metrics_counter_child(fam, badv, &c),
                     CAIRN_EMETRIC_LABEL_VALUE);
    static char longv[CAIRN_METRICS_LABEL_VALUE_MAX + 2];
    memset(longv, 'v', sizeof(longv) - 1);
    const char *const lv[] = {longv};
    assert_int_equal(cairn_metrics_counter_child(fam, lv, &c),
                     CAIRN_EMETRIC_LABEL_VALUE);
    longv[CAIRN_METRICS_LABEL_VALUE_MAX] = '\0';
    assert_int_equal(cairn_metrics_counter_child(fam, lv, &c), 0);
    const char *const nullv[] = {NULL};
    assert_int_equal(cairn_metrics_counter_child(fam, nullv, &c),
                     CAIRN_EBAD_OPTION);
    assert_int_equal(cairn_metrics_counter_child(fam, NULL, &c),
                     CAIRN_EBAD_OPTION);
    const char *const utf[] = {"caf\xc3\xa9 \"q\""};
    assert_int_equal(cairn_metrics_counter_child(fam, utf, &c), 0);

    assert_int_equal(cairn_metrics_register(reg, NULL, NULL), CAIRN_EBAD_OPTION);
    cairn_metrics_desc_t nt = {.type = (cairn_metrics_type_t)0, .name = "x"};
    assert_int_equal(cairn_metrics_register(reg, &nt, NULL), CAIRN_EBAD_OPTION);
    cairn_metrics_destroy(reg);
}

static void mismatch_errors(void **state)
{
    (void)state;
    cairn_metrics_t *reg;
    assert_int_equal(cairn_metrics_create(NULL, &reg), 0);
    cairn_metrics_counter_t *c;
    cairn_metrics_gauge_t *g;
    cairn_metrics_gauge_f64_t *f;
    cairn_metrics_histogram_t *h;
    assert_int_equal(cairn_metrics_counter(reg, "m_total", "Help.", &c), 0);
    assert_int_equal(cairn_metrics_gauge(reg, "m_total", "Help.", &g),
                     CAIRN_EMETRIC_TYPE_MISMATCH);
    assert_int_equal(cairn_metrics_gauge_f64(reg, "m_total", "Help.", &f),
                     CAIRN_EMETRIC_TYPE_MISMATCH);
    static const double b[] = {1, 2};
    assert_int_equal(cairn_metrics_histogram(reg, "m_total", "Help.", b, 2, &h),
                     CAIRN_EMETRIC_TYPE_MISMATCH);
    assert_int_equal(cairn_metrics_counter(reg, "m_total", "Other help.", &c),
                     CAIRN_EMETRIC_HELP_MISMATCH);
    assert_int_equal(cairn_metrics_counter(reg, "m_total", NULL, &c),
                     CAIRN_EMETRIC_HELP_MISMATCH);
    static const char *const one[] = {"a"};
    assert_int_equal(reg_counter(reg, "m_total", one, 1),
                     CAIRN_EMETRIC_HELP_MISMATCH);

    static const char *const ab[] = {"a", "b"}, *const ba[] = {"b", "a"};
    assert_int_equal(reg_counter(reg, "l_total", ab, 2), 0);
    assert_int_equal(reg_counter(reg, "l_total", ab, 2), 0);
    assert_int_equal(reg_counter(reg, "l_total", ba, 2),
                     CAIRN_EMETRIC_LABELS_MISMATCH);
    assert_int_equal(reg_counter(reg, "l_total", ab, 1),
                     CAIRN_EMETRIC_LABELS_MISMATCH);
    assert_int_equal(reg_counter(reg, "l_total", NULL, 0),
                     CAIRN_EMETRIC_LABELS_MISMATCH);

    assert_int_equal(cairn_metrics_histogram(reg, "hb", "H.", b, 2, &h), 0);
    static const double other[] = {1, 3};
    assert_int_equal(cairn_metrics_histogram(reg, "hb", "H.", other, 2, &h),
                     CAIRN_EMETRIC_LABELS_MISMATCH);
    assert_int_equal(cairn_metrics_histogram(reg, "hb", "H.", b, 1, &h),
                     CAIRN_EMETRIC_LABELS_MISMATCH);
    /* The original registrations are untouched by the failed ones. */
    cairn_metrics_counter_t *again;
    assert_int_equal(cairn_metrics_counter(reg, "m_total", "Help.", &again), 0);
    assert_ptr_equal(again, c);
    cairn_metrics_destroy(reg);
}

static void provider_selection(void **state)
{
    (void)state;
    cairn_metrics_t *reg;
    cairn_metrics_opts_t o = {0};
    o.enhanced_mode = 1;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    assert_int_equal(cairn_metrics_provider(reg), CAIRN_METRICS_SEQLOCK);
    cairn_metrics_destroy(reg);
    o.enhanced_mode = 0;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    assert_int_equal(cairn_metrics_provider(reg), CAIRN_METRICS_STANDARD);
    cairn_metrics_destroy(reg);
    o.provider = CAIRN_METRICS_SEQLOCK; /* explicit beats enhanced_mode */
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    assert_int_equal(cairn_metrics_provider(reg), CAIRN_METRICS_SEQLOCK);
    cairn_metrics_destroy(reg);
    assert_int_equal(cairn_metrics_create(NULL, &reg), 0);
    assert_int_equal(cairn_metrics_provider(reg), CAIRN_METRICS_STANDARD);
    cairn_metrics_destroy(reg);
    cairn_metrics_destroy(NULL);

    o.provider = (cairn_metrics_provider_t)7;
    assert_int_equal(cairn_metrics_create(&o, &reg), CAIRN_EBAD_OPTION);
    o.provider = CAIRN_METRICS_SEQLOCK;
    o.shards = CAIRN_METRICS_SHARDS_CAP + 1;
    assert_int_equal(cairn_metrics_create(&o, &reg), CAIRN_EBAD_OPTION);
    o.shards = 0;
    o.max_series = CAIRN_METRICS_MAX_SERIES_CAP + 1;
    assert_int_equal(cairn_metrics_create(&o, &reg), CAIRN_EBAD_OPTION);

    cairn_metrics_provider_t p = CAIRN_METRICS_STANDARD;
    assert_int_equal(cairn_metrics_provider_parse("seqlock", &p), 0);
    assert_int_equal(p, CAIRN_METRICS_SEQLOCK);
    assert_int_equal(cairn_metrics_provider_parse("standard", &p), 0);
    assert_int_equal(p, CAIRN_METRICS_STANDARD);
    assert_int_equal(cairn_metrics_provider_parse("default", &p), 0);
    assert_int_equal(p, CAIRN_METRICS_PROVIDER_DEFAULT);
    assert_int_equal(cairn_metrics_provider_parse("rwlock", &p),
                     CAIRN_ECONFIG_VALUE);
    assert_int_equal(cairn_metrics_provider_parse(NULL, &p),
                     CAIRN_ECONFIG_VALUE);
    assert_int_equal(p, CAIRN_METRICS_PROVIDER_DEFAULT);
    assert_string_equal(cairn_metrics_provider_name(CAIRN_METRICS_SEQLOCK),
                        "seqlock");
    assert_string_equal(cairn_metrics_provider_name(CAIRN_METRICS_STANDARD),
                        "standard");
}

static void accept_negotiation(void **state)
{
    (void)state;
    static const struct {
        const char *accept;
        cairn_metrics_format_t want;
    } cases[] = {
        {NULL, CAIRN_METRICS_PROMETHEUS},
        {"", CAIRN_METRICS_PROMETHEUS},
        {"*/*", CAIRN_METRICS_PROMETHEUS},
        {"text/plain", CAIRN_METRICS_PROMETHEUS},
        {"text/plain;version=0.0.4", CAIRN_METRICS_PROMETHEUS},
        {"application/json", CAIRN_METRICS_JSON},
        {"Application/JSON; charset=utf-8", CAIRN_METRICS_JSON},
        {"application/openmetrics-text", CAIRN_METRICS_OPENMETRICS},
        /* What Prometheus 2.x sends. */
        {"application/openmetrics-text;version=1.0.0,application/"
         "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;"
         "q=0.5,*/*;q=0.1",
         CAIRN_METRICS_OPENMETRICS},
        {"text/plain;version=0.0.4;q=0.9, application/openmetrics-text; "
         "version=1.0.0; q=0.5",
         CAIRN_METRICS_PROMETHEUS},
        {"application/openmetrics-text; version=2.0.0, text/plain;q=0.2",
         CAIRN_METRICS_PROMETHEUS},
        {"application/openmetrics-text;q=0, application/json;q=0.3",
         CAIRN_METRICS_JSON},
        {"application/json;q=0.5, application/openmetrics-text;q=0.5",
         CAIRN_METRICS_JSON}, /* tie: first listed */
        {"  application/openmetrics-text ; version=\"1.0.0\" ; q=1",
         CAIRN_METRICS_OPENMETRICS},
        {"image/png", CAIRN_METRICS_PROMETHEUS}, /* nothing usable */
        {"text/plain;version=9.9", CAIRN_METRICS_PROMETHEUS},
        {",,;q=,application/json;q=abc,application/json;q=0.1",
         CAIRN_METRICS_JSON},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *ct = NULL;
        cairn_metrics_format_t f =
            cairn_metrics_format_from_accept(cases[i].accept, &ct);
        if (f != cases[i].want)
            fail_msg("Accept '%s': got %d want %d", cases[i].accept, (int)f,
                     (int)cases[i].want);
        assert_string_equal(ct, cairn_metrics_content_type(f));
    }
    assert_string_equal(cairn_metrics_content_type(CAIRN_METRICS_PROMETHEUS),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_string_equal(cairn_metrics_content_type(CAIRN_METRICS_OPENMETRICS),
                        "application/openmetrics-text; version=1.0.0; "
                        "charset=utf-8");
    assert_string_equal(cairn_metrics_content_type(CAIRN_METRICS_JSON),
                        "application/json");
    assert_null(cairn_metrics_content_type((cairn_metrics_format_t)0));
}

/* Every exported double reads back as the same double. */
static void double_roundtrip(void **state)
{
    (void)state;
    cairn_metrics_opts_t o = {.provider = CAIRN_METRICS_SEQLOCK,
                              .no_builtin = 1};
    cairn_metrics_t *reg;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    cairn_metrics_gauge_f64_t *g;
    assert_int_equal(cairn_metrics_gauge_f64(reg, "v", "V.", &g), 0);
    unsigned seed = 12345;
    for (int i = 0; i < 2000; i++) {
        uint64_t bits = 0;
        for (int k = 0; k < 4; k++)
            bits = (bits << 16) ^ (uint64_t)(rand_r(&seed) & 0xffff);
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            v = (double)i / 7.0;
        cairn_metrics_gauge_f64_set(g, v);
        char *out = export_str(reg, CAIRN_METRICS_PROMETHEUS);
        const char *line = strstr(out, "\nv ");
        assert_non_null(line);
        double back = strtod(line + 3, NULL);
        if (back != v)
            fail_msg("%.17g exported as %s", v, line + 3);
        free(out);
    }
    cairn_metrics_destroy(reg);
}

/*
 * A registry with every kind, built-ins included, must pass
 * `promtool check metrics` (parse and lint).  promtool missing is a
 * failure: the exposition contract is what this test checks.
 */
static void promtool_check(void **state)
{
    (void)state;
    const char *promtool = "/usr/bin/promtool";
    if (access(promtool, X_OK) != 0)
        fail_msg("promtool not found at %s (install Debian package "
                 "'prometheus'): %s",
                 promtool, strerror(errno));
    cairn_metrics_opts_t o = {.provider = CAIRN_METRICS_SEQLOCK};
    cairn_metrics_t *reg;
    assert_int_equal(cairn_metrics_create(&o, &reg), 0);
    static const char *const rs[] = {"route", "status"};
    cairn_metrics_desc_t cd = {.type = CAIRN_METRICS_COUNTER,
                               .name = "cairn_http_requests_total",
                               .help = "HTTP requests by route and status.",
                               .label_names = rs,
                               .label_count = 2};
    cairn_metrics_family_t *fam;
    cairn_metrics_counter_t *c;
    assert_int_equal(cairn_metrics_register(reg, &cd, &fam), 0);
    const char *const v1[] = {"/v1/events", "201"};
    const char *const v2[] = {"/we\"ird\\path\n", "500"};
    assert_int_equal(cairn_metrics_counter_child(fam, v1, &c), 0);
    cairn_metrics_counter_add(c, 10);
    assert_int_equal(cairn_metrics_counter_child(fam, v2, &c), 0);
    cairn_metrics_counter_inc(c);
    cairn_metrics_gauge_t *g;
    assert_int_equal(cairn_metrics_gauge(reg, "cairn_ring_fill_bytes",
                                         "Bytes used in the ring.\nLine 2 \\.",
                                         &g),
                     0);
    cairn_metrics_gauge_set(g, 4096);
    cairn_metrics_gauge_f64_t *f;
    assert_int_equal(cairn_metrics_gauge_f64(reg, "cairn_fill_ratio",
                                             "Ring fill ratio.", &f),
                     0);
    cairn_metrics_gauge_f64_set(f, 1.0 / 3);
    static const char *const op[] = {"op"};
    static const double b[] = {0.0005, 0.001, 0.01, 0.1, 1};
    cairn_metrics_desc_t hd = {.type = CAIRN_METRICS_HISTOGRAM,
                               .name = "cairn_fsync_duration_seconds",
                               .help = "fsync latency.",
                               .label_names = op,
                               .label_count = 1,
                               .buckets = b,
                               .bucket_count = 5};
    assert_int_equal(cairn_metrics_register(reg, &hd, &fam), 0);
    const char *const seg[] = {"segment"};
    cairn_metrics_histogram_t *h;
    assert_int_equal(cairn_metrics_histogram_child(fam, seg, &h), 0);
    for (int i = 0; i < 100; i++)
        cairn_metrics_histogram_observe(h, i * 0.0007);
    cairn_metrics_histogram_observe(h, INFINITY);

    char *out = export_str(reg, CAIRN_METRICS_PROMETHEUS);
    /* An anonymous temporary file handed to promtool as its stdin. */
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    assert_int_equal(fwrite(out, 1, strlen(out), tmp), strlen(out));
    assert_int_equal(fflush(tmp), 0);
    rewind(tmp);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s check metrics <&%d 2>&1", promtool,
             fileno(tmp));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char msg[4096];
    size_t n = fread(msg, 1, sizeof(msg) - 1, p);
    msg[n] = '\0';
    int status = pclose(p);
    fclose(tmp);
    if (status != 0)
        fail_msg("promtool check metrics failed (status %d):\n%s\n--- "
                 "input ---\n%s",
                 status, msg, out);
    free(out);
    cairn_metrics_destroy(reg);
}

/* ---- public seqlock ------------------------------------------------------ */

typedef struct pair {
    cairn_seqlock_t lock;
    _Atomic uint64_t a, b;
} pair_t;

static void seqlock_basic_wrap(void **state)
{
    (void)state;
    pair_t p = {CAIRN_SEQLOCK_INIT, 0, 0};
    assert_int_equal(cairn_seqlock_sequence(&p.lock), 0);
    /* Start 4 writes before the wrap; odd starts are rounded down. */
    cairn_seqlock_init(&p.lock, UINT64_MAX - 6);
    assert_true(cairn_seqlock_sequence(&p.lock) == UINT64_MAX - 7);
    for (uint64_t i = 1; i <= 8; i++) {
        uint64_t tok = (i % 2) ? cairn_seqlock_write_begin(&p.lock)
                               : cairn_seqlock_write_begin_mw(&p.lock);
        assert_true(cairn_seqlock_sequence(&p.lock) & 1);
        atomic_store_explicit(&p.a, i, memory_order_relaxed);
        atomic_store_explicit(&p.b, i * 3, memory_order_relaxed);
        cairn_seqlock_write_end(&p.lock, tok);
        uint64_t s = cairn_seqlock_read_begin(&p.lock);
        assert_int_equal(s & 1, 0);
        uint64_t a = atomic_load_explicit(&p.a, memory_order_relaxed);
        uint64_t b = atomic_load_explicit(&p.b, memory_order_relaxed);
        assert_false(cairn_seqlock_read_retry(&p.lock, s));
        assert_int_equal(a, i);
        assert_int_equal(b, i * 3);
    }
    /* 8 writes of +2 from UINT64_MAX - 7 wrapped to 8. */
    assert_int_equal(cairn_seqlock_sequence(&p.lock), 8);
    /* A read that overlaps a write must be retried. */
    uint64_t s = cairn_seqlock_read_begin(&p.lock);
    uint64_t tok = cairn_seqlock_write_begin(&p.lock);
    cairn_seqlock_write_end(&p.lock, tok);
    assert_true(cairn_seqlock_read_retry(&p.lock, s));
}

#define BOTH(fn)                                                               \
    {#fn "_seqlock", fn, NULL, NULL, (void *)(uintptr_t)&P_SEQLOCK},           \
    {                                                                          \
        #fn "_standard", fn, NULL, NULL, (void *)(uintptr_t)&P_STANDARD        \
    }

static const struct CMUnitTest cases[] = {
    BOTH(counter_ops),
    BOTH(gauge_ops),
    BOTH(histogram_ops),
    BOTH(family_children),
    BOTH(max_series_full),
    BOTH(concurrent_updates),
    BOTH(golden_exports),
    BOTH(export_buffers),
    BOTH(timer_once),
    BOTH(timer_stop_race),
    BOTH(read_stats_exported),
    cmocka_unit_test(name_validation),
    cmocka_unit_test(mismatch_errors),
    cmocka_unit_test(provider_selection),
    cmocka_unit_test(accept_negotiation),
    cmocka_unit_test(double_roundtrip),
    cmocka_unit_test(promtool_check),
    cmocka_unit_test(seqlock_basic_wrap),
};

CAIRN_TEST_MAIN(cases)
