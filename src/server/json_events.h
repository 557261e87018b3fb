/* json_events.h — events read from a validated JSON body (json_events.c). */
#ifndef CAIRN_SERVER_JSON_EVENTS_H
#define CAIRN_SERVER_JSON_EVENTS_H

#include <stddef.h>

#include "cairn/log.h"
#include "cairn/table.h"

typedef struct cairn__jevent {
    cairn_event_in_t in;     /* strings and payload point into the arena */
    cairn_outcome_t outcome; /* "outcome", if given */
    void *owned;             /* base64-decoded payload, freed with the batch */
} cairn__jevent_t;

typedef struct cairn__jbatch {
    cairn__jevent_t *ev;
    size_t n, ncap;
    char *arena;
    size_t used, cap;
} cairn__jbatch_t;

/* Prepare for a body of body_len bytes (one or several documents).  0 or
 * -1 (out of memory). */
int cairn__jbatch_init(cairn__jbatch_t *b, size_t body_len);

/*
 * Append the events of one JSON document — an event object or an array of
 * them — that the guards' validator has already accepted.  Returns 0, or
 * -1 with a reason in why ("\"type\" is required", "unknown field ...").
 */
int cairn__json_events(const char *doc, size_t len, cairn__jbatch_t *b,
                       char *why, size_t wl);

/* A free slot at b->ev[b->n] (the caller fills it and increments n), or
 * NULL when out of memory. */
cairn__jevent_t *cairn__jbatch_slot(cairn__jbatch_t *b);

void cairn__jbatch_free(cairn__jbatch_t *b);

#endif
