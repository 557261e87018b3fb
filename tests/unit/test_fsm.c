/*
 * test_fsm.c — state machine definitions, machines and value cells.
 *
 * The machine cases form one conformance suite run against both
 * implementations: <case>_lockfree (opts.enhanced = 1) and <case>_mutex
 * (the twin); the cmocka state pointer says which.  Multi-threaded cases
 * are registered with the label "concurrency" (tests/fsm.cmake) so the TSan
 * build runs them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "test.h"

#include "cairn/cell.h"
#include "cairn/fsm.h"
#include "internal/clock.h"

/* cmocka's assertions longjmp into the main thread: worker threads check
 * with this instead and abort the process on failure. */
#define THREAD_CHECK(c)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

#ifdef CAIRN_SANITIZED
#define SCALE 10
#else
#define SCALE 1
#endif

static const int ENHANCED = 1;
static const int MUTEX = 0;

/* The position machine of the seeds README. */
static const char POSITION_DEF[] =
    "# the position machine\n"
    "initial = CREATED\n"
    "transition = CREATED + POSITION_OPENED -> MONITORING\n"
    "transition = MONITORING + EXIT_CONDITION_MET | MANUAL_EXIT_REQUESTED "
    "-> EXIT_PENDING\n"
    "transition = MONITORING + PAUSE_REQUESTED -> PAUSED\n"
    "transition = EXIT_PENDING + EXIT_APPROVED -> EXITING\n"
    "transition = EXIT_PENDING + EXIT_REJECTED -> MONITORING\n"
    "transition = EXITING + EXIT_COMPLETED -> CLOSED\n"
    "transition = EXITING + EXIT_FAILED -> ERROR\n"
    "transition = PAUSED + RESUME_REQUESTED -> MONITORING\n"
    "transition = PAUSED + MANUAL_EXIT_REQUESTED -> EXIT_PENDING\n"
    "transition = ERROR + RECOVERY_COMPLETED -> MONITORING\n"
    "transition = ERROR + EXIT_COMPLETED -> CLOSED\n"
    "transition = * - ERROR, CLOSED + ERROR_OCCURRED -> ERROR\n";

/* A two-state cycle for races and waits. */
static const char CYCLE_DEF[] = "initial = A\n"
                                "transition = A + GO -> B\n"
                                "transition = B + BACK -> A\n"
                                "transition = * + TICK -> A\n";

static cairn_fsm_def_t *parse_ok(const char *text)
{
    cairn_fsm_def_t *def = NULL;
    cairn_fsm_error_t err;
    int rc = cairn_fsm_def_parse(text, strlen(text), &def, &err);
    if (rc != 0)
        fail_msg("parse failed: %s", err.message);
    return def;
}

static uint32_t sid(const cairn_fsm_def_t *def, const char *name)
{
    uint32_t id = 999;
    assert_int_equal(cairn_fsm_def_state_id(def, name, strlen(name), &id), 0);
    return id;
}

static uint32_t tid(const cairn_fsm_def_t *def, const char *name)
{
    uint32_t id = 999;
    assert_int_equal(cairn_fsm_def_trigger_id(def, name, strlen(name), &id),
                     0);
    return id;
}

static int next_by_name(const cairn_fsm_def_t *def, const char *state,
                        const char *trigger, uint32_t *next)
{
    return cairn_fsm_def_next(def, sid(def, state), trigger, strlen(trigger),
                              next);
}

static cairn_fsm_t *open_machine(const cairn_fsm_def_t *def, int enhanced,
                                 size_t context_size, void *guard_ctx)
{
    cairn_fsm_opts_t o;
    cairn_fsm_opts_init(&o);
    o.enhanced = enhanced;
    o.context_size = context_size;
    o.guard_ctx = guard_ctx;
    o.latency_sample_every = 1;
    cairn_fsm_t *m = NULL;
    assert_int_equal(cairn_fsm_open(def, &o, &m), 0);
    return m;
}

static int fire(cairn_fsm_t *m, const char *trigger)
{
    return cairn_fsm_fire_name(m, trigger, strlen(trigger), NULL, NULL, 0,
                               NULL);
}

/* ---- definitions ------------------------------------------------------------ */

static void position_definition_parses(void **state)
{
    (void)state;
    cairn_fsm_def_t *def = parse_ok(POSITION_DEF);
    assert_int_equal(cairn_fsm_def_states(def), 7);
    assert_int_equal(cairn_fsm_def_triggers(def), 11);
    assert_int_equal(sid(def, "CREATED"), 0);
    assert_string_equal(cairn_fsm_def_state_name(def, 0), "CREATED");
    assert_null(cairn_fsm_def_state_name(def, 7));
    assert_null(cairn_fsm_def_trigger_name(def, 11));
    for (uint32_t i = 0; i < cairn_fsm_def_triggers(def); i++) {
        const char *n = cairn_fsm_def_trigger_name(def, i);
        assert_int_equal(tid(def, n), i);
    }

    static const char *const table[][3] = {
        {"CREATED", "POSITION_OPENED", "MONITORING"},
        {"MONITORING", "EXIT_CONDITION_MET", "EXIT_PENDING"},
        {"MONITORING", "MANUAL_EXIT_REQUESTED", "EXIT_PENDING"},
        {"MONITORING", "PAUSE_REQUESTED", "PAUSED"},
        {"EXIT_PENDING", "EXIT_APPROVED", "EXITING"},
        {"EXIT_PENDING", "EXIT_REJECTED", "MONITORING"},
        {"EXITING", "EXIT_COMPLETED", "CLOSED"},
        {"EXITING", "EXIT_FAILED", "ERROR"},
        {"PAUSED", "RESUME_REQUESTED", "MONITORING"},
        {"PAUSED", "MANUAL_EXIT_REQUESTED", "EXIT_PENDING"},
        {"ERROR", "RECOVERY_COMPLETED", "MONITORING"},
        {"ERROR", "EXIT_COMPLETED", "CLOSED"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        uint32_t next = 999;
        assert_int_equal(next_by_name(def, table[i][0], table[i][1], &next),
                         0);
        assert_int_equal(next, sid(def, table[i][2]));
    }
    /* any state but ERROR and CLOSED --ERROR_OCCURRED--> ERROR */
    for (uint32_t s = 0; s < cairn_fsm_def_states(def); s++) {
        const char *n = cairn_fsm_def_state_name(def, s);
        uint32_t next = 999;
        int rc = cairn_fsm_def_next(def, s, "ERROR_OCCURRED", 14, &next);
        if (!strcmp(n, "ERROR") || !strcmp(n, "CLOSED")) {
            assert_int_equal(rc, CAIRN_EFSM_INVALID_TRANSITION);
            assert_int_equal(next, 999);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(next, sid(def, "ERROR"));
        }
    }
    /* 12 listed pairs + 5 from the wildcard */
    assert_int_equal(cairn_fsm_def_transitions(def), 17);

    uint32_t next = 999;
    /* not a trigger of this machine: 1, *next untouched */
    assert_int_equal(cairn_fsm_def_next(def, 0, "price.tick", 10, &next), 1);
    assert_int_equal(cairn_fsm_def_next(def, 0, "POSITION_OPENE", 14, &next),
                     1);
    assert_int_equal(cairn_fsm_def_next(def, 0, "", 0, &next), 1);
    assert_int_equal(next, 999);
    /* a trigger, not from this state */
    assert_int_equal(next_by_name(def, "CLOSED", "POSITION_OPENED", &next),
                     CAIRN_EFSM_INVALID_TRANSITION);
    assert_int_equal(cairn_fsm_def_next(def, 200, "POSITION_OPENED", 15,
                                        &next),
                     CAIRN_EFSM_INVALID_TRANSITION);
    /* by number */
    assert_int_equal(cairn_fsm_def_next_id(def, 0, 11, &next), 1);
    assert_int_equal(cairn_fsm_def_next_id(def, 0, tid(def, "POSITION_OPENED"),
                                           &next),
                     0);
    assert_int_equal(next, sid(def, "MONITORING"));
    assert_int_equal(
        cairn_fsm_def_state_id(def, "NOPE", 4, &next),
        CAIRN_EFSM_UNKNOWN_NAME);
    assert_int_equal(cairn_fsm_def_trigger_id(def, "CREATED", 7, &next),
                     CAIRN_EFSM_UNKNOWN_NAME);
    cairn_fsm_def_free(def);
}

static void explicit_states_and_quotes(void **state)
{
    (void)state;
    cairn_fsm_def_t *def = parse_ok(
        "state = OPEN, SHUT | BROKEN\n"
        "  initial = \"SHUT\"  \n"
        "; a comment\n"
        "\n"
        "transition = SHUT + open -> OPEN\n"
        "transition = OPEN,SHUT + break|smash -> BROKEN\n"
        "transition = * + reset -> SHUT\n");
    /* initial is 0, then the declaration order */
    assert_int_equal(sid(def, "SHUT"), 0);
    assert_int_equal(sid(def, "OPEN"), 1);
    assert_int_equal(sid(def, "BROKEN"), 2);
    uint32_t next;
    assert_int_equal(next_by_name(def, "OPEN", "smash", &next), 0);
    assert_int_equal(next, 2);
    assert_int_equal(next_by_name(def, "BROKEN", "reset", &next), 0);
    assert_int_equal(next, 0);
    assert_int_equal(next_by_name(def, "BROKEN", "smash", &next),
                     CAIRN_EFSM_INVALID_TRANSITION);
    cairn_fsm_def_free(def);
}

typedef struct bad_def {
    const char *text;
    unsigned line;
    const char *says;
} bad_def_t;

static void check_bad(const char *text, unsigned line, const char *says)
{
    cairn_fsm_def_t *def = (cairn_fsm_def_t *)0x1;
    cairn_fsm_error_t err;
    memset(&err, 0, sizeof err);
    int rc = cairn_fsm_def_parse(text, strlen(text), &def, &err);
    if (rc != CAIRN_EFSM_DEFINITION || err.line != line ||
        !strstr(err.message, says))
        fail_msg("definition\n%s\nwanted line %u '%s', got rc %d line %u "
                 "'%s'",
                 text, line, says, rc, err.line, err.message);
    assert_ptr_equal(def, (cairn_fsm_def_t *)0x1); /* untouched */
    if (line > 0) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "line %u: ", line);
        assert_memory_equal(err.message, prefix, strlen(prefix));
    }
}

static void definition_errors_name_the_line(void **state)
{
    (void)state;
    static const bad_def_t cases[] = {
        /* unknown state */
        {"state = A, B\ninitial = A\ntransition = A + GO -> C\n", 3,
         "unknown state 'C'"},
        {"state = A, B\ninitial = A\ntransition = X + GO -> B\n", 3,
         "unknown state 'X'"},
        {"initial = A\ntransition = A + GO -> B\n"
         "transition = * - Q + STOP -> A\n",
         3, "unknown state 'Q'"},
        /* duplicate transition */
        {"initial = A\ntransition = A + GO -> B\n\ntransition = A + GO -> A\n",
         4, "duplicate transition A + GO (already defined on line 2)"},
        {"initial = A\ntransition = A + GO -> B\n"
         "transition = * + GO -> A\n",
         3, "duplicate transition A + GO"},
        {"initial = A\ntransition = A, A + GO -> B\n", 2,
         "duplicate transition A + GO"},
        /* bad syntax */
        {"initial = A\ntransition = A + GO B\n", 2, "no '->'"},
        {"initial = A\ntransition = A GO -> B\n", 2, "no '+'"},
        {"initial = A\ntransition = A + GO -> B -> C\n", 2, "more than one"},
        {"initial = A\ntransition = A + + GO -> B\n", 2, "more than one '+'"},
        {"initial = A\ntransition = A + G O -> B\n", 2, "bad character ' '"},
        {"initial = A\ntransition = A + GO -> \n", 2, "empty target"},
        {"initial = A\ntransition = A, + GO -> B\n", 2, "empty source"},
        {"initial = A\ntransition = * A + GO -> B\n", 2, "expected '*'"},
        {"initial = A\ntransition A + GO -> B\n", 2, "expected 'key = value'"},
        {"initial = A\nstreams = position:*\n", 2, "unknown key 'streams'"},
        {"initial = A\ntransition = A + -GO -> B\n", 2, "starts with '-'"},
        /* definition-level faults */
        {"transition = A + GO -> B\n", 0, "no initial state"},
        {"initial = A\ninitial = B\ntransition = A + GO -> B\n", 2,
         "initial state given twice (first on line 1)"},
        {"initial = A\n", 0, "no transition"},
        {"state = A, B\nstate = B\ninitial = A\ntransition = A + GO -> B\n", 2,
         "state 'B' declared twice"},
        {"initial = A\ntransition = A + GO -> B\n"
         "transition = * - A, B + STOP -> A\n",
         3, "no source state left"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_bad(cases[i].text, cases[i].line, cases[i].says);

    /* More than 256 states: S0 .. S256; S256 first appears on line 257. */
    size_t cap = 64 * 300;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "initial = S0\n");
    for (int i = 0; i < 256; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "transition = S%d + GO -> S%d\n", i, i + 1);
    check_bad(text, 257, "more than 256 states");
    /* 256 states exactly is fine. */
    text[strlen(text) - strlen("transition = S255 + GO -> S256\n")] = '\0';
    cairn_fsm_def_t *def = parse_ok(text);
    assert_int_equal(cairn_fsm_def_states(def), 256);
    uint32_t next;
    assert_int_equal(cairn_fsm_def_next(def, 254, "GO", 2, &next), 0);
    assert_int_equal(next, 255);
    cairn_fsm_def_free(def);

    /* More than 256 triggers: T0 .. T256, T256 on line 258. */
    n = (size_t)snprintf(text, cap, "initial = A\n");
    for (int i = 0; i <= 256; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "transition = A + T%d -> A\n", i);
    check_bad(text, 258, "more than 256 triggers");
    free(text);
}

static void builder_takes_lines_from_a_config_reader(void **state)
{
    (void)state;
    cairn_fsm_builder_t *b;
    cairn_fsm_error_t err;
    assert_int_equal(cairn_fsm_builder_open(&b), 0);
    assert_int_equal(cairn_fsm_builder_add(b, "transition",
                                           "CREATED + POSITION_OPENED -> "
                                           "MONITORING",
                                           12, &err),
                     0);
    assert_int_equal(cairn_fsm_builder_add(b, "streams", "position:*", 13,
                                           &err),
                     CAIRN_EFSM_DEFINITION);
    assert_int_equal(err.line, 13);
    assert_non_null(strstr(err.message, "line 13: unknown key 'streams'"));
    assert_int_equal(cairn_fsm_builder_add(b, "initial", "CREATED", 14, &err),
                     0);
    cairn_fsm_def_t *def = NULL;
    assert_int_equal(cairn_fsm_builder_finish(b, &def, &err), 0);
    assert_int_equal(cairn_fsm_builder_finish(b, &def, &err),
                     CAIRN_EFSM_DEFINITION);
    cairn_fsm_builder_close(b);
    uint32_t next;
    assert_int_equal(cairn_fsm_def_next(def, 0, "POSITION_OPENED", 15, &next),
                     0);
    assert_string_equal(cairn_fsm_def_state_name(def, next), "MONITORING");
    cairn_fsm_def_free(def);
    cairn_fsm_builder_close(NULL);
    cairn_fsm_def_free(NULL);
    cairn_fsm_close(NULL);
}

static void trigger_lookup_full_table(void **state)
{
    (void)state;
    /* 256 triggers with similar names: every one found by name, near
     * misses not. */
    size_t cap = 64 * 300;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "initial = A\n");
    for (int i = 0; i < 256; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "transition = A + order.item.%d -> B%d\n", i,
                              i % 7);
    cairn_fsm_def_t *def = parse_ok(text);
    free(text);
    assert_int_equal(cairn_fsm_def_triggers(def), 256);
    for (int i = 0; i < 256; i++) {
        char name[64], miss[64];
        int len = snprintf(name, sizeof name, "order.item.%d", i);
        uint32_t next = 999, id = 999;
        assert_int_equal(cairn_fsm_def_next(def, 0, name, (size_t)len, &next),
                         0);
        char want[8];
        snprintf(want, sizeof want, "B%d", i % 7);
        assert_string_equal(cairn_fsm_def_state_name(def, next), want);
        assert_int_equal(
            cairn_fsm_def_trigger_id(def, name, (size_t)len, &id), 0);
        assert_int_equal(id, (uint32_t)i);
        int ml = snprintf(miss, sizeof miss, "order.item.%d", i + 256);
        assert_int_equal(cairn_fsm_def_next(def, 0, miss, (size_t)ml, &next),
                         1);
        assert_int_equal(cairn_fsm_def_next(def, 0, name, (size_t)len - 1,
                                            &next) == 1 ||
                             i >= 10,
                         1);
    }
    cairn_fsm_def_free(def);
}

/* ---- machines: the conformance suite ------------------------------------- */

static void fire_follows_the_table(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(POSITION_DEF);
    cairn_fsm_t *m = open_machine(def, enhanced, 0, NULL);
    assert_ptr_equal(cairn_fsm_def(m), def);
    uint64_t w = cairn_fsm_word(m);
    assert_int_equal(cairn_fsm_word_state(w), sid(def, "CREATED"));
    assert_int_equal(cairn_fsm_word_version(w), 0);

    static const char *const path[][2] = {
        {"POSITION_OPENED", "MONITORING"},
        {"PAUSE_REQUESTED", "PAUSED"},
        {"RESUME_REQUESTED", "MONITORING"},
        {"EXIT_CONDITION_MET", "EXIT_PENDING"},
        {"EXIT_REJECTED", "MONITORING"},
        {"ERROR_OCCURRED", "ERROR"},
        {"RECOVERY_COMPLETED", "MONITORING"},
        {"MANUAL_EXIT_REQUESTED", "EXIT_PENDING"},
        {"EXIT_APPROVED", "EXITING"},
        {"EXIT_COMPLETED", "CLOSED"},
    };
    for (size_t i = 0; i < sizeof path / sizeof path[0]; i++) {
        cairn_fsm_result_t res;
        uint32_t from = cairn_fsm_word_state(cairn_fsm_word(m));
        assert_int_equal(cairn_fsm_fire_name(m, path[i][0],
                                             strlen(path[i][0]), NULL, NULL,
                                             0, &res),
                         0);
        assert_int_equal(res.from, from);
        assert_int_equal(res.to, sid(def, path[i][1]));
        assert_int_equal(cairn_fsm_word_version(res.word), i + 1);
        assert_int_equal(cairn_fsm_word_state(res.word), res.to);
        assert_int_equal(cairn_fsm_word(m), res.word);
    }
    /* CLOSED is terminal: even ERROR_OCCURRED is refused. */
    assert_int_equal(fire(m, "ERROR_OCCURRED"), CAIRN_EFSM_INVALID_TRANSITION);
    assert_int_equal(fire(m, "NO_SUCH_TRIGGER"), CAIRN_EFSM_UNKNOWN_NAME);
    cairn_fsm_stats_t st;
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.successes, 10);
    assert_int_equal(st.invalid, 1);
    assert_int_equal(st.unknown, 1);
    assert_int_equal(st.attempts, 12);
    cairn_fsm_close(m);
    cairn_fsm_def_free(def);
}

static void invalid_transition_changes_nothing(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(POSITION_DEF);
    uint64_t ctx0[2] = {11, 22}, ctx1[2] = {33, 44}, got[2];
    cairn_fsm_t *m = open_machine(def, enhanced, sizeof ctx0, NULL);
    assert_int_equal(cairn_fsm_fire_name(m, "POSITION_OPENED", 15, NULL, ctx0,
                                         sizeof ctx0, NULL),
                     0);
    uint64_t before = cairn_fsm_word(m);
    cairn_fsm_result_t res;
    assert_int_equal(cairn_fsm_fire_name(m, "EXIT_APPROVED", 13, NULL, ctx1,
                                         sizeof ctx1, &res),
                     CAIRN_EFSM_INVALID_TRANSITION);
    assert_int_equal(res.from, sid(def, "MONITORING"));
    assert_int_equal(res.to, res.from);
    assert_int_equal(res.word, before);
    assert_int_equal(cairn_fsm_fire(m, 9999, NULL, ctx1, sizeof ctx1, NULL),
                     CAIRN_EFSM_INVALID_TRANSITION);
    assert_int_equal(cairn_fsm_word(m), before);
    uint64_t cw = 0;
    assert_int_equal(cairn_fsm_context(m, got, sizeof got, &cw), 0);
    assert_memory_equal(got, ctx0, sizeof got);
    assert_int_equal(cw, before);
    /* a context of the wrong size is refused before anything happens */
    assert_int_equal(cairn_fsm_fire_name(m, "PAUSE_REQUESTED", 15, NULL, ctx1,
                                         8, NULL),
                     CAIRN_EBAD_OPTION);
    assert_int_equal(cairn_fsm_word(m), before);
    assert_int_equal(cairn_fsm_context(m, got, 8, NULL), CAIRN_EBAD_OPTION);
    cairn_fsm_stats_t st;
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.successes, 1);
    assert_int_equal(st.invalid, 2);
    cairn_fsm_close(m);
    cairn_fsm_def_free(def);
}

typedef struct guard_log {
    int calls;
    uint32_t from, trigger;
    void *ctx;
} guard_log_t;

static guard_log_t g_guard;

/* Allows the exit only when the caller's arg (a double, the PnL percent)
 * reaches 5. */
static int take_profit_guard(void *ctx, uint32_t from, uint32_t trigger,
                             const void *arg)
{
    g_guard.calls++;
    g_guard.from = from;
    g_guard.trigger = trigger;
    g_guard.ctx = ctx;
    return *(const double *)arg >= 5.0 ? 0 : 1;
}

static void guard_rejection(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(POSITION_DEF);
    uint32_t mon = sid(def, "MONITORING"), exit_met =
                                               tid(def, "EXIT_CONDITION_MET");
    assert_int_equal(cairn_fsm_def_set_guard(def, mon, exit_met,
                                             take_profit_guard),
                     0);
    /* no such transition to guard */
    assert_int_equal(cairn_fsm_def_set_guard(def, sid(def, "CLOSED"),
                                             exit_met, take_profit_guard),
                     CAIRN_EFSM_INVALID_TRANSITION);
    assert_int_equal(cairn_fsm_def_set_guard(def, 0, 500, take_profit_guard),
                     CAIRN_EFSM_INVALID_TRANSITION);
    int token;
    uint64_t ctx[1] = {7}, ctx2[1] = {8}, got[1];
    cairn_fsm_t *m = open_machine(def, enhanced, sizeof ctx, &token);
    memset(&g_guard, 0, sizeof g_guard);
    assert_int_equal(fire(m, "POSITION_OPENED"), 0);
    assert_int_equal(g_guard.calls, 0); /* unguarded transition */
    assert_int_equal(cairn_fsm_fire_name(m, "POSITION_OPENED", 15, NULL, ctx,
                                         sizeof ctx, NULL),
                     CAIRN_EFSM_INVALID_TRANSITION);
    uint64_t before = cairn_fsm_word(m);
    double pnl = 2.5;
    cairn_fsm_result_t res;
    assert_int_equal(cairn_fsm_fire(m, exit_met, &pnl, ctx2, sizeof ctx2,
                                    &res),
                     CAIRN_EFSM_GUARD_REJECTED);
    assert_int_equal(g_guard.calls, 1);
    assert_int_equal(g_guard.from, mon);
    assert_int_equal(g_guard.trigger, exit_met);
    assert_ptr_equal(g_guard.ctx, &token);
    assert_int_equal(res.word, before);
    assert_int_equal(cairn_fsm_word(m), before);
    assert_int_equal(cairn_fsm_context(m, got, sizeof got, NULL), 0);
    assert_int_equal(got[0], 0); /* the initial (zero) context */
    pnl = 5.0;
    assert_int_equal(cairn_fsm_fire(m, exit_met, &pnl, ctx2, sizeof ctx2,
                                    &res),
                     0);
    assert_int_equal(res.to, sid(def, "EXIT_PENDING"));
    assert_int_equal(cairn_fsm_context(m, got, sizeof got, NULL), 0);
    assert_int_equal(got[0], 8);
    /* removing the guard */
    assert_int_equal(cairn_fsm_def_set_guard(def, CAIRN_FSM_ANY_STATE,
                                             exit_met, NULL),
                     0);
    cairn_fsm_stats_t st;
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.guard_rejected, 1);
    assert_int_equal(st.successes, 2);
    cairn_fsm_close(m);
    cairn_fsm_def_free(def);
}

static void initial_context_and_options(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    cairn_fsm_opts_t o;
    cairn_fsm_opts_init(&o);
    o.enhanced = enhanced;
    char init[CAIRN_FSM_CONTEXT_MAX], got[CAIRN_FSM_CONTEXT_MAX];
    for (size_t i = 0; i < sizeof init; i++)
        init[i] = (char)(i * 3 + 1);
    o.context_size = sizeof init;
    o.initial_context = init;
    cairn_fsm_t *m = NULL;
    assert_int_equal(cairn_fsm_open(def, &o, &m), 0);
    uint64_t w = 1;
    assert_int_equal(cairn_fsm_context(m, got, sizeof got, &w), 0);
    assert_memory_equal(got, init, sizeof got);
    assert_int_equal(w, 0);
    init[CAIRN_FSM_CONTEXT_MAX - 1] = 'z';
    assert_int_equal(cairn_fsm_fire_name(m, "GO", 2, NULL, init, sizeof init,
                                         NULL),
                     0);
    assert_int_equal(cairn_fsm_context(m, got, sizeof got, &w), 0);
    assert_memory_equal(got, init, sizeof got);
    assert_int_equal(w, cairn_fsm_word(m));
    /* a fire without a context keeps the old one and its word */
    assert_int_equal(fire(m, "BACK"), 0);
    assert_int_equal(cairn_fsm_context(m, got, sizeof got, &w), 0);
    assert_memory_equal(got, init, sizeof got);
    assert_int_equal(cairn_fsm_word_version(w), 1);
    cairn_fsm_close(m);
    o.context_size = CAIRN_FSM_CONTEXT_MAX + 1;
    assert_int_equal(cairn_fsm_open(def, &o, &m), CAIRN_EBAD_OPTION);
    cairn_fsm_def_free(def);
}

static void statistics_count_every_outcome(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    cairn_fsm_t *m = open_machine(def, enhanced, 0, NULL);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(fire(m, "GO"), 0);
        assert_int_equal(fire(m, "GO"), CAIRN_EFSM_INVALID_TRANSITION);
        assert_int_equal(fire(m, "BACK"), 0);
    }
    cairn_fsm_stats_t st;
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.successes, 2000);
    assert_int_equal(st.invalid, 1000);
    assert_int_equal(st.attempts, 3000);
    assert_int_equal(st.guard_rejected, 0);
    assert_int_equal(st.cas_retries, 0);
    /* nobody waited, so no transition made a wake-up call */
    assert_int_equal(st.waits, 0);
    assert_int_equal(st.wake_calls, 0);
    /* sampled every call (latency_sample_every = 1) */
    assert_int_equal(st.latency_samples, 3000);
    uint64_t sum = 0;
    for (int i = 0; i < CAIRN_FSM_LATENCY_BUCKETS; i++)
        sum += st.latency_buckets[i];
    assert_int_equal(sum, 3000);
    assert_true(st.latency_min_ns <= st.latency_max_ns);
    assert_true(st.latency_sum_ns >= st.latency_min_ns * 3000);
    assert_true(st.latency_sum_ns <= st.latency_max_ns * 3000);
    cairn_fsm_close(m);

    /* the default samples one call in 64 per thread */
    cairn_fsm_opts_t o;
    cairn_fsm_opts_init(&o);
    o.enhanced = enhanced;
    assert_int_equal(cairn_fsm_open(def, &o, &m), 0);
    for (int i = 0; i < 640; i++)
        assert_int_equal(fire(m, i % 2 ? "BACK" : "GO"), 0);
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.latency_samples, 10);
    cairn_fsm_close(m);
    cairn_fsm_def_free(def);
}

static void wait_times_out_without_change(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    cairn_fsm_t *m = open_machine(def, enhanced, 0, NULL);
    uint64_t w = cairn_fsm_word(m), now = 12345;
    /* timeout 0: a check, no sleep */
    assert_int_equal(cairn_fsm_wait_for_change(m, w, 0, &now),
                     CAIRN_ETIMEOUT);
    assert_int_equal(now, w);
    uint64_t t0 = cairn__mono_ns();
    assert_int_equal(cairn_fsm_wait_for_change(m, w, 30000000u, &now),
                     CAIRN_ETIMEOUT);
    uint64_t took = cairn__mono_ns() - t0;
    assert_true(took >= 30000000u);
    assert_true(took < 2000000000u);
    assert_int_equal(now, w);
    /* already changed: returns at once with the new word */
    assert_int_equal(fire(m, "GO"), 0);
    assert_int_equal(cairn_fsm_wait_for_change(m, w, UINT64_MAX, &now), 0);
    assert_int_equal(now, cairn_fsm_word(m));
    cairn_fsm_stats_t st;
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.waits, 1);
    assert_int_equal(st.wait_timeouts, 1);
    assert_int_equal(st.wake_calls, 0);
    cairn_fsm_close(m);
    cairn_fsm_def_free(def);
}

typedef struct waiter_arg {
    cairn_fsm_t *m;
    uint64_t seen;
    uint64_t timeout_ns;
    int rc;
    uint64_t now;
    uint64_t took_ns;
    _Atomic int started;
} waiter_arg_t;

static void *waiter(void *p)
{
    waiter_arg_t *a = p;
    atomic_store(&a->started, 1);
    uint64_t t0 = cairn__mono_ns();
    a->rc = cairn_fsm_wait_for_change(a->m, a->seen, a->timeout_ns, &a->now);
    a->took_ns = cairn__mono_ns() - t0;
    return NULL;
}

/* Wait until the waiter thread is registered (so the wake path is taken),
 * or give up after a second (the test still passes through the re-read). */
static void wait_registered(cairn_fsm_t *m, waiter_arg_t *a, uint64_t waits)
{
    while (!atomic_load(&a->started))
        sched_yield();
    for (int i = 0; i < 1000; i++) {
        cairn_fsm_stats_t st;
        cairn_fsm_stats(m, &st);
        if (st.waits > waits)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
}

static void wait_wakes_on_transition(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    cairn_fsm_t *m = open_machine(def, enhanced, 0, NULL);
    for (int round = 0; round < 3; round++) {
        waiter_arg_t a;
        memset(&a, 0, sizeof a);
        a.m = m;
        a.seen = cairn_fsm_word(m);
        /* round 2 waits without a timeout */
        a.timeout_ns = round == 2 ? UINT64_MAX : 10000000000u;
        cairn_fsm_stats_t st;
        cairn_fsm_stats(m, &st);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, waiter, &a), 0);
        wait_registered(m, &a, st.waits);
        /* round 0: A -> B; round 1: B -> A; round 2: the self-transition
         * A -> A, which changes only the version, must wake as well */
        const char *trig = round == 0 ? "GO" : "TICK";
        cairn_fsm_result_t res;
        assert_int_equal(cairn_fsm_fire_name(m, trig, strlen(trig), NULL,
                                             NULL, 0, &res),
                         0);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(a.rc, 0);
        assert_int_equal(a.now, res.word);
        assert_true(a.took_ns < 5000000000u);
    }
    cairn_fsm_stats_t st;
    cairn_fsm_stats(m, &st);
    assert_int_equal(st.waits, 3);
    assert_int_equal(st.wake_calls, 3);
    assert_int_equal(st.wait_timeouts, 0);
    cairn_fsm_close(m);
    cairn_fsm_def_free(def);
}

/* Racing: THREADS threads fire GO on a machine in A; exactly one wins. */
#define RACE_THREADS 4

typedef struct race {
    cairn_fsm_t *m;
    pthread_barrier_t start, done;
    int rounds;
    _Atomic int wins;
    _Atomic int losses;
    _Atomic int winner;
    int rc_other; /* set if some result was neither 0 nor invalid */
} race_t;

typedef struct race_arg {
    race_t *r;
    int id;
} race_arg_t;

static void *race_thread(void *p)
{
    race_arg_t *a = p;
    race_t *r = a->r;
    uint64_t ctx[2];
    for (int round = 0; round < r->rounds; round++) {
        pthread_barrier_wait(&r->start);
        ctx[0] = (uint64_t)a->id;
        ctx[1] = (uint64_t)round;
        cairn_fsm_result_t res;
        int rc = cairn_fsm_fire_name(r->m, "GO", 2, NULL, ctx, sizeof ctx,
                                     &res);
        if (rc == 0) {
            atomic_fetch_add(&r->wins, 1);
            atomic_store(&r->winner, a->id);
            THREAD_CHECK(res.to == 1 && res.from == 0);
        } else if (rc == CAIRN_EFSM_INVALID_TRANSITION) {
            atomic_fetch_add(&r->losses, 1);
            /* the loser decided on the winner's word */
            THREAD_CHECK(cairn_fsm_word_state(res.word) == 1);
        } else {
            THREAD_CHECK(!"unexpected result");
        }
        pthread_barrier_wait(&r->done);
        pthread_barrier_wait(&r->done); /* main checked and reset */
    }
    return NULL;
}

static void racing_triggers_have_one_winner(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    race_t r;
    memset(&r, 0, sizeof r);
    r.m = open_machine(def, enhanced, 2 * sizeof(uint64_t), NULL);
    r.rounds = 2000 / SCALE;
    pthread_barrier_init(&r.start, NULL, RACE_THREADS + 1);
    pthread_barrier_init(&r.done, NULL, RACE_THREADS + 1);
    pthread_t th[RACE_THREADS];
    race_arg_t args[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        args[i].r = &r;
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &args[i]),
                         0);
    }
    for (int round = 0; round < r.rounds; round++) {
        atomic_store(&r.wins, 0);
        atomic_store(&r.losses, 0);
        atomic_store(&r.winner, -1);
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.done);
        assert_int_equal(atomic_load(&r.wins), 1);
        assert_int_equal(atomic_load(&r.losses), RACE_THREADS - 1);
        uint64_t ctx[2], cw;
        assert_int_equal(cairn_fsm_context(r.m, ctx, sizeof ctx, &cw), 0);
        /* the context is the winner's, published with the winner's word */
        assert_int_equal(ctx[0], (uint64_t)atomic_load(&r.winner));
        assert_int_equal(ctx[1], (uint64_t)round);
        assert_int_equal(cw, cairn_fsm_word(r.m));
        assert_int_equal(cairn_fsm_word_state(cw), 1);
        assert_int_equal(cairn_fsm_word_version(cw), 2 * round + 1);
        assert_int_equal(fire(r.m, "BACK"), 0);
        pthread_barrier_wait(&r.done);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(th[i], NULL);
    cairn_fsm_stats_t st;
    cairn_fsm_stats(r.m, &st);
    assert_int_equal(st.successes, 2 * (uint64_t)r.rounds);
    assert_int_equal(st.invalid, (RACE_THREADS - 1) * (uint64_t)r.rounds);
    if (!enhanced)
        assert_int_equal(st.cas_retries, 0);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    cairn_fsm_close(r.m);
    cairn_fsm_def_free(def);
}

/* Context under churn: every thread keeps firing whichever of GO/BACK is
 * valid, each with its own context.  Whatever interleaving happened, the
 * final context must be the one of the final transition (never an older
 * one overwriting it), and every context read must carry a word whose
 * payload matches its publisher. */
#define CHURN_THREADS 3

typedef struct churn {
    cairn_fsm_t *m;
    int iterations;
    _Atomic int running;
} churn_t;

typedef struct churn_arg {
    churn_t *c;
    int id;
    uint64_t last_word;   /* word of this thread's last win */
    uint64_t last_serial; /* the context it published with it */
    uint64_t wins;
} churn_arg_t;

/* context: {thread id, serial, word-derived check} — the check word binds
 * the payload to one publisher's (id, serial) so a mix would be seen. */
static void *churn_thread(void *p)
{
    churn_arg_t *a = p;
    churn_t *c = a->c;
    for (int i = 0; i < c->iterations; i++) {
        uint64_t ctx[3] = {(uint64_t)a->id, (uint64_t)i,
                           ((uint64_t)a->id << 32) ^ (uint64_t)i ^
                               UINT64_C(0xabcdef)};
        const char *trig = (i + a->id) % 2 ? "BACK" : "GO";
        cairn_fsm_result_t res;
        int rc = cairn_fsm_fire_name(c->m, trig, strlen(trig), NULL, ctx,
                                     sizeof ctx, &res);
        if (rc == 0) {
            a->last_word = res.word;
            a->last_serial = (uint64_t)i;
            a->wins++;
        } else {
            THREAD_CHECK(rc == CAIRN_EFSM_INVALID_TRANSITION);
        }
        uint64_t got[3], cw;
        THREAD_CHECK(cairn_fsm_context(c->m, got, sizeof got, &cw) == 0);
        if (cairn_fsm_word_version(cw) == 0) /* the initial context */
            THREAD_CHECK(got[0] == 0 && got[1] == 0 && got[2] == 0);
        else
            THREAD_CHECK(got[2] ==
                         ((got[0] << 32) ^ got[1] ^ UINT64_C(0xabcdef)));
        THREAD_CHECK(cairn_fsm_word_version(cw) <=
                     cairn_fsm_word_version(cairn_fsm_word(c->m)));
    }
    return NULL;
}

static void context_applied_only_by_winner(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    churn_t c;
    memset(&c, 0, sizeof c);
    c.m = open_machine(def, enhanced, 3 * sizeof(uint64_t), NULL);
    c.iterations = 200000 / SCALE;
    pthread_t th[CHURN_THREADS];
    churn_arg_t args[CHURN_THREADS];
    memset(args, 0, sizeof args);
    for (int i = 0; i < CHURN_THREADS; i++) {
        args[i].c = &c;
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, churn_thread, &args[i]),
                         0);
    }
    uint64_t wins = 0;
    for (int i = 0; i < CHURN_THREADS; i++) {
        pthread_join(th[i], NULL);
        wins += args[i].wins;
    }
    uint64_t final = cairn_fsm_word(c.m), got[3], cw;
    assert_int_equal(cairn_fsm_word_version(final), wins);
    assert_int_equal(cairn_fsm_context(c.m, got, sizeof got, &cw), 0);
    assert_int_equal(cw, final);
    int found = 0;
    for (int i = 0; i < CHURN_THREADS; i++) {
        if (args[i].wins && args[i].last_word == final) {
            found = 1;
            assert_int_equal(got[0], (uint64_t)i);
            assert_int_equal(got[1], args[i].last_serial);
        }
    }
    assert_true(found);
    cairn_fsm_close(c.m);
    cairn_fsm_def_free(def);
}

/* Many waiters, many transitions: every waiter sees every change it waits
 * for (no lost wake-up), with a generous timeout that must never expire. */
#define WAITERS 3

typedef struct chase {
    cairn_fsm_t *m;
    uint64_t target_version;
} chase_t;

static void *chaser(void *p)
{
    chase_t *c = p;
    uint64_t w = cairn_fsm_word(c->m);
    while (cairn_fsm_word_version(w) < c->target_version) {
        uint64_t now;
        int rc = cairn_fsm_wait_for_change(c->m, w, 10000000000u, &now);
        THREAD_CHECK(rc == 0);
        THREAD_CHECK(now != w);
        w = now;
    }
    return NULL;
}

static void no_lost_wakeups(void **state)
{
    int enhanced = *(const int *)*state;
    cairn_fsm_def_t *def = parse_ok(CYCLE_DEF);
    chase_t c;
    c.m = open_machine(def, enhanced, 0, NULL);
    c.target_version = 20000 / SCALE;
    pthread_t th[WAITERS];
    for (int i = 0; i < WAITERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, chaser, &c), 0);
    for (uint64_t v = 0; v < c.target_version; v++) {
        assert_int_equal(fire(c.m, "TICK"), 0);
        if (v % 64 == 0)
            sched_yield();
    }
    for (int i = 0; i < WAITERS; i++)
        pthread_join(th[i], NULL);
    cairn_fsm_stats_t st;
    cairn_fsm_stats(c.m, &st);
    assert_int_equal(st.wait_timeouts, 0);
    assert_int_equal(st.successes, c.target_version);
    cairn_fsm_close(c.m);
    cairn_fsm_def_free(def);
}

/* ---- value cells ------------------------------------------------------------ */

static void cell_store_and_load(void **state)
{
    (void)state;
    cairn_cell_t cell;
    cairn_cell_init(&cell);
    uint64_t in[CAIRN_CELL_WORDS_MAX], out[CAIRN_CELL_WORDS_MAX];
    for (unsigned i = 0; i < CAIRN_CELL_WORDS_MAX; i++)
        in[i] = 1000 + i;
    assert_int_equal(cairn_cell_writes(&cell), 0);
    cairn_cell_store(&cell, in, CAIRN_CELL_WORDS_MAX);
    cairn_cell_read_stats_t rs = {0, 0, 0};
    assert_int_equal(cairn_cell_load_stats(&cell, out, CAIRN_CELL_WORDS_MAX,
                                           &rs),
                     0);
    assert_memory_equal(in, out, sizeof in);
    assert_int_equal(rs.reads, 1);
    assert_int_equal(rs.retries, 0);
    in[0] = cairn_cell_from_f64(101.25);
    cairn_cell_store_mw(&cell, in, 2);
    assert_int_equal(cairn_cell_load(&cell, out, 3), 0);
    assert_true(cairn_cell_to_f64(out[0]) == 101.25);
    assert_int_equal(out[2], 1002);
    assert_int_equal(cairn_cell_writes(&cell), 2);
    assert_int_equal(sizeof(cairn_cell_t), 128);
}

/* One writer stores (price, pnl, time, version, filler...) with
 * price = 100 + version / 4, pnl = (price - 100) * 3, time = 7 * version +
 * 11, filler[i] = version * (i + 1); readers check the relations on every
 * load, and that versions never go backwards. */
#define CELL_READERS 3
#define CELL_WORDS 12

typedef struct cell_race {
    cairn_cell_t cell;
    uint64_t writes;
    _Atomic int done;
} cell_race_t;

typedef struct cell_reader {
    cell_race_t *r;
    cairn_cell_read_stats_t stats;
    uint64_t last_version;
} cell_reader_t;

static void fill_tuple(uint64_t *w, uint64_t version)
{
    double price = 100.0 + (double)version / 4.0;
    w[0] = cairn_cell_from_f64(price);
    w[1] = cairn_cell_from_f64((price - 100.0) * 3.0);
    w[2] = 7 * version + 11;
    w[3] = version;
    for (unsigned i = 4; i < CELL_WORDS; i++)
        w[i] = version * (i + 1);
}

static void *cell_reader(void *p)
{
    cell_reader_t *a = p;
    uint64_t w[CELL_WORDS];
    int done;
    do {
        done = atomic_load(&a->r->done);
        cairn_cell_load_stats(&a->r->cell, w, CELL_WORDS, &a->stats);
        uint64_t v = w[3];
        uint64_t want[CELL_WORDS];
        fill_tuple(want, v);
        THREAD_CHECK(memcmp(w, want, sizeof w) == 0);
        THREAD_CHECK(v >= a->last_version);
        a->last_version = v;
    } while (!done);
    return NULL;
}

static void cell_reads_are_never_torn(void **state)
{
    (void)state;
    cell_race_t *r = aligned_alloc(64, sizeof *r);
    assert_non_null(r);
    cairn_cell_init(&r->cell);
    uint64_t w[CELL_WORDS];
    fill_tuple(w, 0);
    cairn_cell_store(&r->cell, w, CELL_WORDS);
    r->writes = 2000000 / SCALE;
    atomic_init(&r->done, 0);
    pthread_t th[CELL_READERS];
    cell_reader_t rd[CELL_READERS];
    memset(rd, 0, sizeof rd);
    for (int i = 0; i < CELL_READERS; i++) {
        rd[i].r = r;
        assert_int_equal(pthread_create(&th[i], NULL, cell_reader, &rd[i]), 0);
    }
    for (uint64_t v = 1; v <= r->writes; v++) {
        fill_tuple(w, v);
        cairn_cell_store(&r->cell, w, CELL_WORDS);
    }
    atomic_store(&r->done, 1);
    uint64_t reads = 0;
    for (int i = 0; i < CELL_READERS; i++) {
        pthread_join(th[i], NULL);
        reads += rd[i].stats.reads;
        assert_int_equal(rd[i].last_version, r->writes);
    }
    assert_true(reads >= CELL_READERS);
    assert_int_equal(cairn_cell_writes(&r->cell), r->writes + 1);
    free(r);
}

#define TWIN(fn)                                                               \
    {#fn "_lockfree", fn, NULL, NULL, (void *)&ENHANCED},                      \
        {#fn "_mutex", fn, NULL, NULL, (void *)&MUTEX}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(position_definition_parses),
    cmocka_unit_test(explicit_states_and_quotes),
    cmocka_unit_test(definition_errors_name_the_line),
    cmocka_unit_test(builder_takes_lines_from_a_config_reader),
    cmocka_unit_test(trigger_lookup_full_table),
    TWIN(fire_follows_the_table),
    TWIN(invalid_transition_changes_nothing),
    TWIN(guard_rejection),
    TWIN(initial_context_and_options),
    TWIN(statistics_count_every_outcome),
    TWIN(wait_times_out_without_change),
    TWIN(wait_wakes_on_transition),
    TWIN(racing_triggers_have_one_winner),
    TWIN(context_applied_only_by_winner),
    TWIN(no_lost_wakeups),
    cmocka_unit_test(cell_store_and_load),
    cmocka_unit_test(cell_reads_are_never_torn),
};

CAIRN_TEST_MAIN(tests)
