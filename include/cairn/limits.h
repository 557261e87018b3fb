/*
 * limits.h — every limit cairn enforces, in one place.
 *
 * Each limit has a DEFAULT (used when configuration says nothing) and, where
 * it is configurable, a CAP (the largest value configuration may set) with
 * the reason for it.  docs/CONFIG.md lists the same numbers; keep them equal.
 */
#ifndef CAIRN_LIMITS_H
#define CAIRN_LIMITS_H

#include <stdint.h>

/* ---- event model (fixed, part of the on-disk and wire formats) ---------- */

/* Stream names: 1..255 bytes of UTF-8 without control characters; the
 * length is stored in one byte in every record. */
#define CAIRN_STREAM_MAX 255
/* Event types: 1..128 bytes; types are identifiers, not documents. */
#define CAIRN_TYPE_MAX 128
/* Idempotency, correlation and causation ids: 0..128 bytes (a UUID is 36). */
#define CAIRN_ID_MAX 128

/* Largest payload of one event.  Default 1 MiB; cap 16 MiB because a record
 * must fit many times into the smallest ring (64 MiB) and one HTTP body. */
#define CAIRN_MAX_EVENT_BYTES_DEFAULT (1u << 20)
#define CAIRN_MAX_EVENT_BYTES_CAP (16u << 20)

/* Events in one append call.  Default 10000; cap 65536 so a batch's seq
 * range fits the ring claim word with a huge margin (see src/log/ring.c). */
#define CAIRN_MAX_BATCH_EVENTS_DEFAULT 10000u
#define CAIRN_MAX_BATCH_EVENTS_CAP 65536u
/* Bytes of one append call (records with headers): at most a quarter of
 * the ring (16 MiB with the default 64 MiB ring), so a full ring always
 * drains far enough for any batch; not separately configurable. */
#define CAIRN_BATCH_RING_FRACTION 4u

/* Largest stream version: the version field of the packed stream state is
 * 40 bits wide (see include/cairn/table.h). */
#define CAIRN_VERSION_MAX ((UINT64_C(1) << 40) - 1)

/* ---- [event_processor] --------------------------------------------------- */

/* Ring size in MiB (buffer_size_mb).  Default 64.  Minimum 1.  Cap 4096:
 * positions inside the ring claim word are 32-bit counts of 8-byte units
 * (32 GiB of address space), and the ring must stay well below that so
 * wrapped arithmetic is unambiguous.  Rounded up to a power of two. */
#define CAIRN_BUFFER_SIZE_MB_DEFAULT 64u
#define CAIRN_BUFFER_SIZE_MB_CAP 4096u

/* Distinct streams tracked (max_endpoints).  Default 100000.  Cap 16777216:
 * the table is reserved up front at 2x slots of 128 bytes each (4 GiB of
 * address space at the cap, touched only as streams arrive). */
#define CAIRN_MAX_ENDPOINTS_DEFAULT 100000u
#define CAIRN_MAX_ENDPOINTS_CAP (1u << 24)

/* How long an append waits for ring space before failing with
 * CAIRN_ELOG_FULL.  Default 1000 ms; cap 60000 ms (a client should hear
 * back within a minute). */
#define CAIRN_APPEND_TIMEOUT_MS_DEFAULT 1000u
#define CAIRN_APPEND_TIMEOUT_MS_CAP 60000u

/* Idempotency ids remembered per log (idempotency_window): the most recent
 * ids win, older ones are forgotten in FIFO order.  Default 100000; cap
 * 10000000 (about 1.5 GiB with 128-byte ids). */
#define CAIRN_IDEMPOTENCY_WINDOW_DEFAULT 100000u
#define CAIRN_IDEMPOTENCY_WINDOW_CAP 10000000u

/* Concurrent zero-copy ring readers (iterators).  Fixed: each holds a
 * cache-line slot the producers' space check consults. */
#define CAIRN_RING_READERS_MAX 64

/* ---- [storage] ------------------------------------------------------------ */

/* Segment roll size (segment_bytes).  Default 64 MiB; minimum 64 KiB;
 * cap 1 GiB: sealed segments are compressed and read whole. */
#define CAIRN_SEGMENT_BYTES_DEFAULT (UINT64_C(64) << 20)
#define CAIRN_SEGMENT_BYTES_MIN (UINT64_C(64) << 10)
#define CAIRN_SEGMENT_BYTES_CAP (UINT64_C(1) << 30)

/* Longest a memory/os append stays unsynced (sync_interval_ms) when no
 * sync append forces an earlier fdatasync.  Default 100 ms; cap 60000. */
#define CAIRN_SYNC_INTERVAL_MS_DEFAULT 100u
#define CAIRN_SYNC_INTERVAL_MS_CAP 60000u

/* ---- payload guards: [limits] (src/guard) ------------------------------- */

/* Bytes of one payload as received, before any decoding (max_input_bytes).
 * Default 1 MiB; cap 16 MiB, the largest event the log accepts. */
#define CAIRN_GUARD_MAX_INPUT_BYTES_DEFAULT (1u << 20)
#define CAIRN_GUARD_MAX_INPUT_BYTES_CAP (16u << 20)
/* Bytes produced by decompression, summed over all layers
 * (max_decompressed_bytes).  Default 1 MiB; cap 16 MiB: the decoded payload
 * is stored as one event, and the decode buffer is held in memory. */
#define CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_DEFAULT (1u << 20)
#define CAIRN_GUARD_MAX_DECOMPRESSED_BYTES_CAP (16u << 20)
/* Decoded bytes per compressed input byte (max_compression_ratio), checked
 * only once more than CAIRN_GUARD_RATIO_GRACE_BYTES have been produced, so
 * tiny payloads that compress well are not refused.  Default 100 (Envoy's);
 * minimum 1; cap 100000: above that the absolute cap always trips first
 * (16 MiB / 100000 is 168 bytes of input). */
#define CAIRN_GUARD_MAX_COMPRESSION_RATIO_DEFAULT 100u
#define CAIRN_GUARD_MAX_COMPRESSION_RATIO_CAP 100000u
#define CAIRN_GUARD_RATIO_GRACE_BYTES (64u << 10)
/* Nested compression layers decoded (max_decode_layers).  Default 2; 0
 * refuses compressed input altogether; cap 5 (urllib3 and undici cap chained
 * encodings at 5). */
#define CAIRN_GUARD_MAX_DECODE_LAYERS_DEFAULT 2u
#define CAIRN_GUARD_MAX_DECODE_LAYERS_CAP 5u
/* zstd window: log2 of the largest back-reference window a frame may ask
 * for.  Fixed at 23 (8 MiB, RFC 9659's limit for HTTP): the window is
 * memory the decoder allocates before producing a byte. */
#define CAIRN_GUARD_ZSTD_WINDOW_LOG_MAX 23
/* Open JSON arrays/objects (max_json_depth).  Default 64; cap 1024: the
 * validator keeps 12 bytes of state per level. */
#define CAIRN_GUARD_MAX_JSON_DEPTH_DEFAULT 64u
#define CAIRN_GUARD_MAX_JSON_DEPTH_CAP 1024u
/* Encoded bytes of one JSON string or key between its quotes
 * (max_json_string_bytes).  Default 64 KiB; cap 16 MiB (a whole payload). */
#define CAIRN_GUARD_MAX_JSON_STRING_BYTES_DEFAULT (64u << 10)
#define CAIRN_GUARD_MAX_JSON_STRING_BYTES_CAP (16u << 20)
/* Members of one JSON object or elements of one array (max_json_members).
 * Default 10000; cap 1000000.  Bounds the duplicate-key table. */
#define CAIRN_GUARD_MAX_JSON_MEMBERS_DEFAULT 10000u
#define CAIRN_GUARD_MAX_JSON_MEMBERS_CAP 1000000u
/* Pattern files: patterns per file, bytes per line, bytes per id.  Fixed;
 * Hyperscan compile time grows with the pattern count, and ids are copied
 * into every result. */
#define CAIRN_GUARD_PATTERNS_MAX 4096
#define CAIRN_GUARD_PATTERN_LINE_MAX 4096
#define CAIRN_GUARD_PATTERN_ID_MAX 63
/* Flag-only pattern ids copied into one result (more are counted). */
#define CAIRN_GUARD_FLAGS_MAX 8

/* ---- metrics: [metrics] (src/metrics) ------------------------------------ */

/* Children (series) in one registry over all families.  Default 100000;
 * cap 10000000: a seqlock-provider series costs up to a few KiB with many
 * shards, and /metrics must stay exportable in well under a second. */
#define CAIRN_METRICS_MAX_SERIES_DEFAULT 100000u
#define CAIRN_METRICS_MAX_SERIES_CAP 10000000u
/* Label names per family.  Fixed: 16 covers every real dimension set, and
 * lookups copy the values into a fixed array. */
#define CAIRN_METRICS_LABELS_MAX 16
/* Bytes of one label value.  Fixed: label values are identifiers (route,
 * status, stream prefix), not documents; a long value is a cardinality
 * mistake. */
#define CAIRN_METRICS_LABEL_VALUE_MAX 1024
/* Bytes of a metric or label name, and of a help text.  Fixed. */
#define CAIRN_METRICS_NAME_MAX 256
#define CAIRN_METRICS_HELP_MAX 4096
/* Finite histogram buckets (+Inf is implicit).  Fixed: a histogram shard
 * is a seqlock over 16 + 3 words, three cache lines. */
#define CAIRN_METRICS_BUCKETS_MAX 16
/* Write shards per counter/histogram (seqlock provider).  Default: the
 * online CPUs rounded up to a power of two; cap 64, because every shard of
 * every series is read by each export and each snapshot. */
#define CAIRN_METRICS_SHARDS_CAP 64u
/* One histogram read in this many (per thread) is timed for the read
 * statistics; timing every read would cost more than the read. */
#define CAIRN_METRICS_READ_TIMING_EVERY 64u

/* ---- stream guard state: [breaker], [throttle], eviction (src/table) --- */

/* Failures within the window that open a breaker (failure_threshold).
 * Default 5; 0 turns automatic opening off; cap 255: the closed-state
 * failure count is an 8-bit field of the breaker word. */
#define CAIRN_BREAKER_FAILURE_THRESHOLD_DEFAULT 5u
#define CAIRN_BREAKER_FAILURE_THRESHOLD_CAP 255u
/* failure_window_secs and recovery_timeout_secs.  Defaults 60 and 30;
 * minimum 1; cap 86400 (a day): the breaker clock ticks every 2^24 ns, and
 * a window of days is a count of old failures, not a breaker. */
#define CAIRN_BREAKER_WINDOW_SECS_DEFAULT 60u
#define CAIRN_BREAKER_RECOVERY_SECS_DEFAULT 30u
#define CAIRN_BREAKER_SECS_CAP 86400u
/* Probes admitted while half-open (half_open_max_requests).  Default 3;
 * minimum 1; cap 15: admitted and succeeded probes are 4-bit fields. */
#define CAIRN_BREAKER_HALF_OPEN_MAX_DEFAULT 3u
#define CAIRN_BREAKER_HALF_OPEN_MAX_CAP 15u
/* success_threshold: in (0, 1]; default 0.8.  The breaker closes after
 * ceil(success_threshold x half_open_max_requests) probe successes. */

/* Events per second per stream (stream_rate).  Default 0 (off); cap 10^9:
 * the emission interval T = 10^9 / rate ns must be at least 1 ns. */
#define CAIRN_THROTTLE_RATE_CAP 1000000000u
/* Events admitted at once (stream_burst).  Default 1; minimum 1; cap
 * 1000000, so the tolerance T x burst stays far inside the 63-bit TAT. */
#define CAIRN_THROTTLE_BURST_DEFAULT 1u
#define CAIRN_THROTTLE_BURST_CAP 1000000u

/* Idle time after which a stream may be evicted from a full table
 * (idle_evict_secs).  Default 3600; 0 never evicts; cap 31536000 (a
 * year). */
#define CAIRN_IDLE_EVICT_SECS_DEFAULT 3600u
#define CAIRN_IDLE_EVICT_SECS_CAP 31536000u
/* Slots one eviction attempt examines before giving up with
 * CAIRN_ETABLE_FULL.  Fixed: bounds the latency a new stream name adds;
 * the scan resumes where the last one stopped. */
#define CAIRN_EVICT_SCAN_MAX 4096u
/* Streams evicted per attempt, so the next inserts find room at once. */
#define CAIRN_EVICT_BATCH 8u
/* Bits of the evicted-names filter per max_endpoints entry.  Fixed: 16
 * bits with 4 probes keep false positives (which only cost a log scan)
 * near 0.2 % while up to max_endpoints names have been evicted. */
#define CAIRN_EVICT_BLOOM_BITS_PER_ENDPOINT 16u

/* $audit events per second for the whole log, and the burst.  Fixed: an
 * attack that flips breakers or throttles on many streams must not turn
 * into an equal flood of audit events; the rest are counted as
 * suppressed and the count is carried by the next event written. */
#define CAIRN_AUDIT_RATE 100u
#define CAIRN_AUDIT_BURST 100u

/* ---- state machines and value cells (src/fsm, include/cairn/cell.h) ----- */

/* States and triggers of one definition.  Fixed at 256: the stream table
 * keeps a bound stream's state in an 8-bit field (include/cairn/table.h),
 * and a machine's packed word keeps it in its top 8 bits. */
#define CAIRN_FSM_STATES_MAX 256u
#define CAIRN_FSM_TRIGGERS_MAX 256u
/* Bytes of a state or trigger name: a trigger is matched against event
 * types, so it has the event type's limit. */
#define CAIRN_FSM_NAME_MAX CAIRN_TYPE_MAX
/* Lines of one definition and bytes of one line.  Fixed: a definition is
 * configuration; these bound the parser's memory (a few MiB at most). */
#define CAIRN_FSM_DEF_LINES_MAX 65536u
#define CAIRN_FSM_DEF_LINE_MAX 4096u
/* Bytes of a machine's context.  Fixed at 112 (14 words): the context
 * lives in a value cell next to the packed word of the transition that
 * published it (15 words), and is copied under its seqlock on every
 * transition that carries one, so it is meant for a few fields (prices,
 * ids, times), not documents. */
#define CAIRN_FSM_CONTEXT_MAX 112u
/* One fire in this many (per thread) is timed for the latency statistics:
 * two clock reads cost about as much as the transition itself.  Default
 * 64; 1 times every call; cap 65536 (rounded up to a power of two). */
#define CAIRN_FSM_LATENCY_SAMPLE_DEFAULT 64u
#define CAIRN_FSM_LATENCY_SAMPLE_CAP 65536u
/* 64-bit words in one value cell.  Fixed at 15 so a cell (sequence +
 * words) fills exactly two cache lines. */
#define CAIRN_CELL_WORDS_MAX 15u

/* ---- bus and projections (src/bus, src/projection) ---------------------- */

/* Asynchronous subscribers on one bus.  Default 32, cap 48: each holds at
 * most one of the log's CAIRN_RING_READERS_MAX (64) ring reader slots
 * while it reads from the ring; the rest stay free for the storage writer,
 * the bus dispatcher, projection derives and plain readers. */
#define CAIRN_BUS_SUBSCRIBERS_DEFAULT 32u
#define CAIRN_BUS_SUBSCRIBERS_CAP 48u
/* A subscriber that has not called cairn_bus_next for this long gives up
 * its ring pin (the bus keeper closes its iterator; the next call reopens
 * it at the cursor), so a stalled consumer cannot stop producers once the
 * ring is full.  Default 100 ms, cap 60 s, minimum 1 ms. */
#define CAIRN_BUS_PARK_MS_DEFAULT 100u
#define CAIRN_BUS_PARK_MS_CAP 60000u
/* Every this many events read from the ring, a subscriber whose cursor has
 * fallen behind the log's drain point (what the storage writer has written
 * out, or what an in-memory log released) reopens its iterator: a durable
 * log then serves it from the segments and stops holding ring space.
 * Default 4096; 1 .. 2^20. */
#define CAIRN_BUS_REPIN_EVENTS_DEFAULT 4096u
#define CAIRN_BUS_REPIN_EVENTS_CAP (1u << 20)
/* Synchronous handlers on one bus (projections take one each).  Fixed:
 * every append walks them, so the list is short by design. */
#define CAIRN_BUS_HANDLERS_MAX 32u
/* The bus keeper's period: it unpins parked subscribers, refreshes lag
 * gauges and dispatches events a busy appender left pending.  Fixed at
 * 10 ms: the worst extra delay of a synchronous handler under load. */
#define CAIRN_BUS_KEEPER_INTERVAL_MS 10u
/* Rounds one appender spends dispatching for others before it leaves the
 * rest to the next appender or the keeper (bounds its append latency). */
#define CAIRN_BUS_DISPATCH_ROUNDS 64u

/* Streams cached per projection.  Default 10000, cap 2^22: the cache is
 * preallocated, capacity x (state_max + 320) bytes. */
#define CAIRN_PROJECTION_CACHE_DEFAULT 10000u
#define CAIRN_PROJECTION_CACHE_CAP (1u << 22)
/* Bytes of one stream's state (serialized states: counts, last, merge).
 * Default 4096, cap 1 MiB, rounded up to 8.  A fold that would exceed it
 * fails with CAIRN_EPROJECTION_STATE_TOO_LARGE; nothing is truncated. */
#define CAIRN_PROJECTION_STATE_MAX_DEFAULT 4096u
#define CAIRN_PROJECTION_STATE_MAX_CAP (1u << 20)
/* [projection] snapshot_every: a snapshot each time a derive folds a
 * stream past a multiple of this many events.  Default 1000; 0 = off;
 * cap 2^30. */
#define CAIRN_PROJECTION_SNAPSHOT_EVERY_DEFAULT 1000u
#define CAIRN_PROJECTION_SNAPSHOT_EVERY_CAP (1u << 30)
/* Snapshots kept per stream (the newest; older ones serve time travel).
 * Fixed at 4. */
#define CAIRN_PROJECTION_SNAPSHOTS_PER_STREAM 4u
/* Streams with snapshots per projection.  Default 100000, cap 2^24; when
 * full, further streams get none (replay stays correct, only longer). */
#define CAIRN_PROJECTION_SNAPSHOT_STREAMS_DEFAULT 100000u
#define CAIRN_PROJECTION_SNAPSHOT_STREAMS_CAP (1u << 24)
/* Bytes of a projection name: [A-Za-z0-9_.-], it names the snapshot file. */
#define CAIRN_PROJECTION_NAME_MAX 64u
/* A derive whose result newer events overtook before it could be cached
 * folds the remainder and tries again this many times, then returns the
 * state uncached. */
#define CAIRN_PROJECTION_DERIVE_RETRIES 4u

#endif /* CAIRN_LIMITS_H */
