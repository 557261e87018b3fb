/* idem.h (internal) — the idempotency window; see idem.c. */
#ifndef CAIRN_LOG_IDEM_H
#define CAIRN_LOG_IDEM_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/log.h"

typedef struct cairn__idem cairn__idem_t;

int cairn__idem_open(uint32_t window, cairn__idem_t **out);
void cairn__idem_close(cairn__idem_t *m);
/* 1 and *res when (stream, id) is remembered, else 0.  The stream is
 * keyed by its name, so a stream evicted from the table and re-created
 * keeps its ids, and a slot reused by another stream inherits none. */
int cairn__idem_find(cairn__idem_t *m, const char *stream, size_t stream_len,
                     const char *id, size_t id_len,
                     cairn_append_result_t *res);
/* Remember (stream, id) -> res, forgetting the oldest entry when full. */
void cairn__idem_put(cairn__idem_t *m, const char *stream, size_t stream_len,
                     const char *id, size_t id_len,
                     const cairn_append_result_t *res);

#endif
