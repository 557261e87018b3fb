/*
 * positions.c — a trading desk in miniature: 1000 positions driven through
 * the position state machine of the seeds README by a price feed, every
 * transition recorded as an event in a cairn log.
 *
 *   positions [--positions N] [--tokens K] [--ticks T] [--seed S]
 *             [--feed FILE.csv] [--mutex] [--verify]
 *
 * What happens:
 *   - N positions (default 1000) each hold one of K tokens (TOK0, TOK1,
 *     ...; position i holds TOK(i % K)) with an entry price near the
 *     token's starting price and an amount of 1..10.  Each has a state
 *     machine (lock-free, or the mutex twin with --mutex) whose context
 *     records the price, PnL and tick of its last transition, and a value
 *     cell with its live (price, pnl, pnl %, tick, version).
 *   - The feed is T generated ticks (a random walk per token with a bad
 *     price now and then), or the CSV file given with --feed: lines
 *     "TOKEN,PRICE", '#' comments and a "token,price" header allowed.
 *     Prices that do not parse, are not finite or are not positive, and
 *     unknown tokens, are rejected and counted.
 *   - Each accepted tick fans out to the open positions holding the token:
 *     the cell gets pnl = (price - entry) * amount and
 *     pnl % = (price - entry) / entry * 100, then the position's rules may
 *     fire one trigger (take profit / stop loss at +-4 %, a few manual
 *     exits, pauses, rejections, failures and recoveries chosen by id).
 *   - Every transition is appended to the in-memory log, stream
 *     "position:<id>", event type = the trigger name, a JSON payload with
 *     the prices, expected version = the machine's version before it.
 *   - A monitor thread reads every cell while the feed runs and checks
 *     each (price, pnl, version) it sees is consistent.
 *   - A summary table follows; --verify replays the log through the
 *     definition and checks it against the machines (exit 1 on mismatch).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/cell.h"
#include "cairn/fsm.h"
#include "cairn/log.h"

static const char POSITION_DEF[] =
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

enum { CREATED, MONITORING, EXIT_PENDING, EXITING, CLOSED, ERROR, PAUSED,
       NSTATES };
static const char *const STATE_NAMES[NSTATES] = {
    "CREATED", "MONITORING", "EXIT_PENDING", "EXITING",
    "CLOSED",  "ERROR",      "PAUSED"};

#define TAKE_PROFIT_PCT 4.0
#define STOP_LOSS_PCT -4.0
#define MAX_TOKENS 256
#define CELL_WORDS 5 /* price, pnl, pnl %, tick, version */

/* The machine context: where the last transition happened. */
typedef struct position_ctx {
    double price;
    double pnl;
    uint64_t tick;
} position_ctx_t;

typedef struct position {
    cairn_cell_t cell; /* written by the feed thread only */
    uint32_t id;
    uint32_t token;
    double entry;
    double amount;
    uint64_t updates; /* cell version */
    cairn_fsm_t *m;
    uint64_t paused_at;
    int rejected_once, paused_once, manual_done, error_done;
} position_t;

typedef struct desk {
    cairn_fsm_def_t *def;
    uint32_t trig[16]; /* trigger numbers by the order in TRIGGERS */
    uint32_t state_of[NSTATES]; /* enum above -> state number */
    cairn_log_t *log;
    position_t *pos;
    uint32_t npos, ntokens;
    uint32_t *holders;  /* ntokens x npos */
    uint32_t *nholders;
    uint64_t ticks_total; /* for the tick-driven rules */
    /* counters */
    uint64_t accepted, rejected, updates, transitions, refused;
    _Atomic int done;
    /* monitor */
    uint64_t mon_reads, mon_retries, mon_torn;
} desk_t;

enum {
    T_POSITION_OPENED, T_EXIT_CONDITION_MET, T_MANUAL_EXIT_REQUESTED,
    T_PAUSE_REQUESTED, T_EXIT_APPROVED, T_EXIT_REJECTED, T_EXIT_COMPLETED,
    T_EXIT_FAILED, T_RESUME_REQUESTED, T_RECOVERY_COMPLETED,
    T_ERROR_OCCURRED, NTRIGGERS
};
static const char *const TRIGGERS[NTRIGGERS] = {
    "POSITION_OPENED",  "EXIT_CONDITION_MET", "MANUAL_EXIT_REQUESTED",
    "PAUSE_REQUESTED",  "EXIT_APPROVED",      "EXIT_REJECTED",
    "EXIT_COMPLETED",   "EXIT_FAILED",        "RESUME_REQUESTED",
    "RECOVERY_COMPLETED", "ERROR_OCCURRED"};

static void fatal(const char *what, int rc)
{
    fprintf(stderr, "positions: %s: %s\n", what, cairn_strerror(rc));
    exit(1);
}

/* The one PnL formula, shared by the writer and the monitor's check. */
static double pnl_of(double price, double entry, double amount)
{
    return (price - entry) * amount;
}

static uint32_t state_of(const desk_t *d, const position_t *p)
{
    uint32_t s = cairn_fsm_word_state(cairn_fsm_word(p->m));
    for (int e = 0; e < NSTATES; e++)
        if (d->state_of[e] == s)
            return (uint32_t)e;
    return CREATED;
}

/* Fire trigger t on p at `price`; on success append the event.  Returns 1
 * if the transition happened. */
static int transition(desk_t *d, position_t *p, int t, double price,
                      uint64_t tick)
{
    position_ctx_t ctx = {price, pnl_of(price, p->entry, p->amount), tick};
    cairn_fsm_result_t res;
    int rc = cairn_fsm_fire(p->m, d->trig[t], NULL, &ctx, sizeof ctx, &res);
    if (rc == CAIRN_EFSM_INVALID_TRANSITION ||
        rc == CAIRN_EFSM_GUARD_REJECTED) {
        d->refused++;
        return 0;
    }
    if (rc)
        fatal("fire", rc);
    char stream[32], payload[512];
    int sl = snprintf(stream, sizeof stream, "position:%u", p->id);
    int pl = snprintf(
        payload, sizeof payload,
        "{\"position\":%u,\"token\":\"TOK%u\",\"from\":\"%s\",\"to\":\"%s\","
        "\"price\":%.17g,\"entry\":%.17g,\"amount\":%.17g,\"pnl\":%.17g,"
        "\"pnl_pct\":%.17g,\"tick\":%llu}",
        p->id, p->token, cairn_fsm_def_state_name(d->def, res.from),
        cairn_fsm_def_state_name(d->def, res.to), price, p->entry, p->amount,
        ctx.pnl, (price - p->entry) / p->entry * 100.0,
        (unsigned long long)tick);
    cairn_event_in_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TRIGGERS[t];
    ev.type_len = strlen(TRIGGERS[t]);
    ev.payload = payload;
    ev.payload_len = (size_t)pl;
    ev.flags = CAIRN_EVENT_JSON;
    cairn_append_result_t ar;
    /* The stream's version tracks the machine's: expect the one before. */
    rc = cairn_log_append(d->log, stream, (size_t)sl, &ev, 1,
                          (int64_t)cairn_fsm_word_version(res.word) - 1,
                          CAIRN_DURABILITY_MEMORY, &ar);
    if (rc)
        fatal("append", rc);
    d->transitions++;
    return 1;
}

/* The desk's rules: at most one trigger per position per tick. */
static void apply_rules(desk_t *d, position_t *p, double price, double pct,
                        uint64_t tick)
{
    const uint64_t T = d->ticks_total ? d->ticks_total : 1;
    switch (state_of(d, p)) {
    case MONITORING:
        if (!p->error_done && p->id % 97 == 13 && tick >= T / 2) {
            p->error_done = 1;
            transition(d, p, T_ERROR_OCCURRED, price, tick);
        } else if (pct >= TAKE_PROFIT_PCT || pct <= STOP_LOSS_PCT) {
            transition(d, p, T_EXIT_CONDITION_MET, price, tick);
        } else if (!p->manual_done && p->id % 100 == 42 && tick >= T / 3) {
            p->manual_done = 1;
            transition(d, p, T_MANUAL_EXIT_REQUESTED, price, tick);
        } else if (!p->paused_once && p->id % 50 == 3 && tick >= T / 4) {
            p->paused_once = 1;
            p->paused_at = tick;
            transition(d, p, T_PAUSE_REQUESTED, price, tick);
        }
        break;
    case PAUSED:
        if (tick >= p->paused_at + T / 10)
            transition(d, p,
                       p->id % 4 == 3 ? T_MANUAL_EXIT_REQUESTED
                                      : T_RESUME_REQUESTED,
                       price, tick);
        break;
    case EXIT_PENDING:
        if (p->id % 7 == 0 && !p->rejected_once) {
            p->rejected_once = 1;
            transition(d, p, T_EXIT_REJECTED, price, tick);
        } else {
            transition(d, p, T_EXIT_APPROVED, price, tick);
        }
        break;
    case EXITING:
        transition(d, p, p->id % 31 == 5 ? T_EXIT_FAILED : T_EXIT_COMPLETED,
                   price, tick);
        break;
    case ERROR:
        transition(d, p,
                   p->id % 2 == 0 ? T_RECOVERY_COMPLETED : T_EXIT_COMPLETED,
                   price, tick);
        break;
    default:
        break;
    }
}

/* One accepted price for a token: update every open holder. */
static void on_price(desk_t *d, uint32_t token, double price, uint64_t tick)
{
    d->accepted++;
    const uint32_t *h = &d->holders[(size_t)token * d->npos];
    for (uint32_t j = 0; j < d->nholders[token]; j++) {
        position_t *p = &d->pos[h[j]];
        if (state_of(d, p) == CLOSED)
            continue;
        double pnl = pnl_of(price, p->entry, p->amount);
        double pct = (price - p->entry) / p->entry * 100.0;
        uint64_t w[CELL_WORDS] = {cairn_cell_from_f64(price),
                                  cairn_cell_from_f64(pnl),
                                  cairn_cell_from_f64(pct), tick,
                                  ++p->updates};
        cairn_cell_store(&p->cell, w, CELL_WORDS);
        d->updates++;
        apply_rules(d, p, price, pct, tick);
    }
}

static int price_ok(double price)
{
    return isfinite(price) && price > 0.0;
}

/* ---- the monitor thread ----------------------------------------------- */

static void *monitor(void *arg)
{
    desk_t *d = arg;
    uint64_t *last = calloc(d->npos, sizeof *last);
    cairn_cell_read_stats_t rs = {0, 0, 0};
    if (!last)
        return NULL;
    int done;
    do {
        done = atomic_load(&d->done);
        for (uint32_t i = 0; i < d->npos; i++) {
            const position_t *p = &d->pos[i];
            uint64_t w[CELL_WORDS];
            cairn_cell_load_stats(&p->cell, w, CELL_WORDS, &rs);
            double price = cairn_cell_to_f64(w[0]);
            double pnl = cairn_cell_to_f64(w[1]);
            if (w[4] == 0)
                continue; /* no price yet */
            if (pnl != pnl_of(price, p->entry, p->amount) || w[4] < last[i])
                d->mon_torn++;
            last[i] = w[4];
        }
    } while (!done);
    d->mon_reads = rs.reads;
    d->mon_retries = rs.retries;
    free(last);
    return NULL;
}

/* ---- feeds --------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double token_base(uint32_t t)
{
    return 10.0 * (t + 1);
}

static void run_generated(desk_t *d, uint64_t ticks, uint64_t seed)
{
    double last[MAX_TOKENS];
    uint64_t rng = seed * 0x9E3779B97F4A7C15u + 1;
    for (uint32_t t = 0; t < d->ntokens; t++)
        last[t] = token_base(t);
    static const double BAD[] = {NAN, -1.0, 0.0, INFINITY};
    for (uint64_t tick = 1; tick <= ticks; tick++) {
        uint64_t r = xorshift(&rng);
        uint32_t t = (uint32_t)(r % d->ntokens);
        double price;
        if (tick % 997 == 0) {
            price = BAD[(tick / 997) % 4];
        } else {
            /* up to +-0.1 % per tick */
            double step = ((double)((r >> 24) % 2001) - 1000.0) / 1e6;
            last[t] *= 1.0 + step;
            price = last[t];
        }
        if (!price_ok(price)) {
            d->rejected++;
            continue;
        }
        on_price(d, t, price, tick);
    }
}

static int run_csv(desk_t *d, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "positions: cannot open %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    char line[256];
    uint64_t tick = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '#' || *s == '\n' || *s == '\r' || *s == '\0' ||
            !strncmp(s, "token,", 6))
            continue;
        tick++;
        char *comma = strchr(s, ',');
        unsigned t;
        char *end;
        if (!comma || sscanf(s, "TOK%u,", &t) != 1 || t >= d->ntokens) {
            d->rejected++;
            continue;
        }
        errno = 0;
        double price = strtod(comma + 1, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (end == comma + 1 || *end != '\0' || errno || !price_ok(price)) {
            d->rejected++;
            continue;
        }
        on_price(d, t, price, tick);
    }
    fclose(f);
    return 0;
}

/* ---- verification: replay the log through the definition ------------------ */

static int verify(desk_t *d)
{
    uint32_t *state = calloc(d->npos, sizeof *state);
    uint64_t *version = calloc(d->npos, sizeof *version);
    cairn_log_iter_t *it;
    cairn_read_filter_t filt;
    memset(&filt, 0, sizeof filt);
    filt.stream = "position:";
    filt.stream_len = 9;
    filt.stream_prefix = 1;
    if (!state || !version || cairn_log_iter_open(d->log, &filt, &it) != 0) {
        fprintf(stderr, "verify: cannot read the log\n");
        free(state);
        free(version);
        return 1;
    }
    uint64_t events = 0;
    int bad = 0;
    cairn_event_t ev;
    while (!bad && cairn_log_iter_next(it, &ev) == 1) {
        unsigned id;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)ev.stream_len, ev.stream);
        if (sscanf(name, "position:%u", &id) != 1 || id >= d->npos) {
            fprintf(stderr, "verify: unexpected stream %s\n", name);
            bad = 1;
            break;
        }
        uint32_t next;
        int rc = cairn_fsm_def_next(d->def, state[id], ev.type, ev.type_len,
                                    &next);
        if (rc != 0 || ev.version != version[id] + 1) {
            fprintf(stderr, "verify: %s v%llu: %.*s is not valid from %s\n",
                    name, (unsigned long long)ev.version, (int)ev.type_len,
                    ev.type, cairn_fsm_def_state_name(d->def, state[id]));
            bad = 1;
            break;
        }
        state[id] = next;
        version[id] = ev.version;
        events++;
    }
    cairn_log_iter_close(it);
    for (uint32_t i = 0; !bad && i < d->npos; i++) {
        uint64_t w = cairn_fsm_word(d->pos[i].m);
        if (cairn_fsm_word_state(w) != state[i] ||
            cairn_fsm_word_version(w) != version[i]) {
            fprintf(stderr,
                    "verify: position:%u machine %s v%llu, log %s v%llu\n", i,
                    cairn_fsm_def_state_name(d->def, cairn_fsm_word_state(w)),
                    (unsigned long long)cairn_fsm_word_version(w),
                    cairn_fsm_def_state_name(d->def, state[i]),
                    (unsigned long long)version[i]);
            bad = 1;
        }
    }
    if (!bad && events != d->transitions) {
        fprintf(stderr, "verify: %llu events in the log, %llu transitions\n",
                (unsigned long long)events,
                (unsigned long long)d->transitions);
        bad = 1;
    }
    if (!bad && d->mon_torn) {
        fprintf(stderr, "verify: the monitor saw %llu inconsistent cells\n",
                (unsigned long long)d->mon_torn);
        bad = 1;
    }
    free(state);
    free(version);
    if (!bad)
        printf("verify: ok (%llu events replayed, %u streams match their "
               "machines)\n",
               (unsigned long long)events, d->npos);
    return bad;
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: positions [--positions N] [--tokens K] [--ticks T] "
               "[--seed S] [--feed FILE.csv] [--mutex] [--verify]\n");
}

static int arg_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t npos = 1000, ntokens = 16, ticks = 200000, seed = 1;
    const char *feed = NULL;
    int enhanced = 1, do_verify = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--positions") && has && !arg_u64(argv[i + 1], &npos))
            i++;
        else if (!strcmp(a, "--tokens") && has &&
                 !arg_u64(argv[i + 1], &ntokens))
            i++;
        else if (!strcmp(a, "--ticks") && has && !arg_u64(argv[i + 1], &ticks))
            i++;
        else if (!strcmp(a, "--seed") && has && !arg_u64(argv[i + 1], &seed))
            i++;
        else if (!strcmp(a, "--feed") && has)
            feed = argv[++i];
        else if (!strcmp(a, "--mutex"))
            enhanced = 0;
        else if (!strcmp(a, "--verify"))
            do_verify = 1;
        else if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (npos == 0 || npos > 1000000 || ntokens == 0 ||
        ntokens > MAX_TOKENS) {
        fprintf(stderr, "positions: need 1..1000000 positions and 1..%d "
                        "tokens\n",
                MAX_TOKENS);
        return 2;
    }

    desk_t d;
    memset(&d, 0, sizeof d);
    d.npos = (uint32_t)npos;
    d.ntokens = (uint32_t)ntokens;
    d.ticks_total = feed ? 0 : ticks;
    cairn_fsm_error_t err;
    int rc = cairn_fsm_def_parse(POSITION_DEF, sizeof POSITION_DEF - 1, &d.def,
                                 &err);
    if (rc) {
        fprintf(stderr, "positions: definition: %s\n", err.message);
        return 1;
    }
    for (int t = 0; t < NTRIGGERS; t++)
        if ((rc = cairn_fsm_def_trigger_id(d.def, TRIGGERS[t],
                                           strlen(TRIGGERS[t]), &d.trig[t])))
            fatal("trigger", rc);
    for (int s = 0; s < NSTATES; s++)
        if ((rc = cairn_fsm_def_state_id(d.def, STATE_NAMES[s],
                                         strlen(STATE_NAMES[s]),
                                         &d.state_of[s])))
            fatal("state", rc);
    cairn_log_opts_t lo;
    cairn_log_opts_init(&lo);
    if (d.npos > lo.max_endpoints)
        lo.max_endpoints = d.npos;
    if ((rc = cairn_log_open(&lo, &d.log)))
        fatal("log", rc);

    d.pos = aligned_alloc(64, d.npos * sizeof *d.pos);
    d.holders = calloc((size_t)d.ntokens * d.npos, sizeof *d.holders);
    d.nholders = calloc(d.ntokens, sizeof *d.nholders);
    if (!d.pos || !d.holders || !d.nholders)
        fatal("memory", -ENOMEM);
    cairn_fsm_opts_t fo;
    cairn_fsm_opts_init(&fo);
    fo.enhanced = enhanced;
    fo.context_size = sizeof(position_ctx_t);
    for (uint32_t i = 0; i < d.npos; i++) {
        position_t *p = &d.pos[i];
        memset(p, 0, sizeof *p);
        cairn_cell_init(&p->cell);
        p->id = i;
        p->token = i % d.ntokens;
        /* entries within +-0.5 % of the token's starting price */
        p->entry = token_base(p->token) *
                   (1.0 + (double)((int)((i * 7) % 11) - 5) / 1000.0);
        p->amount = 1.0 + i % 10;
        if ((rc = cairn_fsm_open(d.def, &fo, &p->m)))
            fatal("machine", rc);
        uint32_t *h = &d.holders[(size_t)p->token * d.npos];
        h[d.nholders[p->token]++] = i;
    }
    for (uint32_t i = 0; i < d.npos; i++)
        transition(&d, &d.pos[i], T_POSITION_OPENED, d.pos[i].entry, 0);

    pthread_t mon;
    if ((rc = pthread_create(&mon, NULL, monitor, &d)))
        fatal("monitor thread", -rc);
    if (feed)
        rc = run_csv(&d, feed);
    else
        run_generated(&d, ticks, seed);
    atomic_store(&d.done, 1);
    pthread_join(mon, NULL);
    if (rc)
        return 1;

    /* the summary */
    uint32_t count[NSTATES] = {0};
    double total_pnl = 0.0;
    cairn_fsm_stats_t agg;
    memset(&agg, 0, sizeof agg);
    agg.latency_min_ns = UINT64_MAX;
    for (uint32_t i = 0; i < d.npos; i++) {
        position_t *p = &d.pos[i];
        count[state_of(&d, p)]++;
        uint64_t w[CELL_WORDS];
        cairn_cell_load(&p->cell, w, CELL_WORDS);
        if (w[4])
            total_pnl += cairn_cell_to_f64(w[1]);
        cairn_fsm_stats_t st;
        cairn_fsm_stats(p->m, &st);
        agg.attempts += st.attempts;
        agg.successes += st.successes;
        agg.invalid += st.invalid;
        agg.latency_samples += st.latency_samples;
        agg.latency_sum_ns += st.latency_sum_ns;
        if (st.latency_samples && st.latency_min_ns < agg.latency_min_ns)
            agg.latency_min_ns = st.latency_min_ns;
        if (st.latency_max_ns > agg.latency_max_ns)
            agg.latency_max_ns = st.latency_max_ns;
    }
    printf("cairn positions: %u positions, %u tokens, %s machines, feed: ",
           d.npos, d.ntokens, enhanced ? "lock-free" : "mutex");
    if (feed)
        printf("%s\n", feed);
    else
        printf("generated (%llu ticks, seed %llu)\n",
               (unsigned long long)ticks, (unsigned long long)seed);
    printf("%-16s %10s\n", "state", "positions");
    for (int s = 0; s < NSTATES; s++)
        printf("%-16s %10u\n", STATE_NAMES[s], count[s]);
    printf("%-16s %10.2f\n", "total PnL", total_pnl);
    printf("%-16s %10llu\n", "prices accepted",
           (unsigned long long)d.accepted);
    printf("%-16s %10llu\n", "prices rejected",
           (unsigned long long)d.rejected);
    printf("%-16s %10llu\n", "updates", (unsigned long long)d.updates);
    printf("%-16s %10llu\n", "transitions",
           (unsigned long long)d.transitions);
    printf("%-16s %10llu\n", "log events",
           (unsigned long long)(cairn_log_next_seq(d.log) -
                                cairn_log_first_seq(d.log)));
    printf("%-16s %10llu (attempts %llu, refused %llu)\n", "fsm successes",
           (unsigned long long)agg.successes,
           (unsigned long long)agg.attempts, (unsigned long long)agg.invalid);
    if (agg.latency_samples)
        printf("%-16s min %llu ns, avg %.0f ns, max %llu ns (%llu samples)\n",
               "fsm latency", (unsigned long long)agg.latency_min_ns,
               (double)agg.latency_sum_ns / (double)agg.latency_samples,
               (unsigned long long)agg.latency_max_ns,
               (unsigned long long)agg.latency_samples);
    printf("%-16s %10llu (retries %llu, inconsistent %llu)\n",
           "monitor reads", (unsigned long long)d.mon_reads,
           (unsigned long long)d.mon_retries,
           (unsigned long long)d.mon_torn);

    int bad = do_verify ? verify(&d) : (d.mon_torn != 0);
    for (uint32_t i = 0; i < d.npos; i++)
        cairn_fsm_close(d.pos[i].m);
    free(d.pos);
    free(d.holders);
    free(d.nholders);
    cairn_log_close(d.log);
    cairn_fsm_def_free(d.def);
    return bad ? 1 : 0;
}
