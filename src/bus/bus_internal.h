/* bus_internal.h — what the projection module needs from the bus: an owned
 * copy of a read filter, and the bus's registry of named attachments
 * (projections), which cairn_bus_close destroys. */
#ifndef CAIRN_BUS_INTERNAL_H
#define CAIRN_BUS_INTERNAL_H

#include "cairn/bus.h"

/* A read filter whose strings the bus owns. */
typedef struct cairn__filter_copy {
    cairn_read_filter_t f; /* points into the fields below */
    char *stream;
    char **types;
    size_t *type_lens;
} cairn__filter_copy_t;

/* Copy src (NULL: match everything); from_seq and the time range are
 * cleared.  0, CAIRN_EBAD_FILTER, -ENOMEM. */
int cairn__filter_copy(cairn__filter_copy_t *dst, const cairn_read_filter_t *src);
void cairn__filter_free(cairn__filter_copy_t *fc);

/* A named object living as long as the bus unless destroyed first. */
typedef struct cairn__bus_attached {
    struct cairn__bus_attached *next; /* private to the bus */
    const char *name;                 /* owned by the object */
    void *obj;
    void (*destroy)(void *obj);       /* calls cairn__bus_detach itself */
} cairn__bus_attached_t;

/* 0, or CAIRN_EPROJECTION_EXISTS when the name is taken. */
int cairn__bus_attach(cairn_bus_t *bus, cairn__bus_attached_t *a);
/* Remove a (no-op when absent). */
void cairn__bus_detach(cairn_bus_t *bus, cairn__bus_attached_t *a);
/* The object attached under name, or NULL. */
void *cairn__bus_find(cairn_bus_t *bus, const char *name);

#endif
