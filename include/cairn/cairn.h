/*
 * cairn.h — umbrella header: version, export macro and the error table.
 *
 * Every cairn function that can fail returns int: 0 on success, a negative
 * code on failure.  System failures are -errno (always > -4096); cairn's own
 * codes come from CAIRN_ERRNO_MAP below and live in -1000 .. -1999.  A code,
 * once published, is never renumbered; new codes take new numbers.
 */
#ifndef CAIRN_CAIRN_H
#define CAIRN_CAIRN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_VERSION_MAJOR 0
#define CAIRN_VERSION_MINOR 1
#define CAIRN_VERSION_PATCH 0
#define CAIRN_VERSION_STRING "0.1.0"
#define CAIRN_VERSION_NUMBER                                                   \
    (CAIRN_VERSION_MAJOR * 10000 + CAIRN_VERSION_MINOR * 100 +                 \
     CAIRN_VERSION_PATCH)

#if defined(CAIRN_BUILDING) && defined(__GNUC__)
#define CAIRN_EXPORT __attribute__((visibility("default")))
#else
#define CAIRN_EXPORT
#endif

/*
 * The error table: X(NAME, value, message).  CAIRN_E<NAME> is the code.
 * Ranges: 1000 event model and log, 1100 stream table, 1200 payload guards,
 * 1300 metrics, 1400 storage, 1500 bus/projection/fsm, 1600 config/server.
 */
#define CAIRN_ERRNO_MAP(X)                                                     \
    X(STREAM_EMPTY, -1000, "stream name is empty")                             \
    X(STREAM_TOO_LONG, -1001, "stream name is longer than 255 bytes")          \
    X(STREAM_UTF8, -1002, "stream name is not valid UTF-8")                    \
    X(STREAM_CONTROL, -1003, "stream name contains a control character")       \
    X(STREAM_RESERVED, -1004, "stream names starting with '$' are reserved")   \
    X(TYPE_EMPTY, -1005, "event type is empty")                                \
    X(TYPE_TOO_LONG, -1006, "event type is longer than 128 bytes")             \
    X(TYPE_UTF8, -1007, "event type is not valid UTF-8")                       \
    X(TYPE_CONTROL, -1008, "event type contains a control character")          \
    X(ID_TOO_LONG, -1009, "idempotency id is longer than 128 bytes")           \
    X(ID_UTF8, -1010, "idempotency id is not valid UTF-8")                     \
    X(META_TOO_LONG, -1011,                                                    \
      "correlation or causation id is longer than 128 bytes")                  \
    X(META_UTF8, -1012, "correlation or causation id is not valid UTF-8")      \
    X(PAYLOAD_TOO_LARGE, -1013, "event payload exceeds max_event_bytes")       \
    X(PAYLOAD_NULL, -1014, "payload pointer is NULL with a non-zero length")   \
    X(BATCH_EMPTY, -1015, "append batch holds no events")                      \
    X(BATCH_TOO_LARGE, -1016,                                                  \
      "append batch exceeds max_batch_events or a quarter of the ring")              \
    X(VERSION_CONFLICT, -1017, "expected version does not match the stream")   \
    X(BAD_EXPECTED, -1018, "expected_version is not a valid value")            \
    X(BAD_DURABILITY, -1019, "durability is not memory, os or sync")           \
    X(LOG_FULL, -1020, "log buffer full: append waited append_timeout_ms")     \
    X(VERSION_OVERFLOW, -1021, "stream version would exceed 2^40 - 1")         \
    X(CLOSED, -1022, "log is closed")                                          \
    X(NOT_FOUND, -1023, "stream not found")                                    \
    X(EXPIRED, -1024, "requested events are no longer retained")              \
    X(READ_ONLY, -1025, "log is read-only after an I/O failure")               \
    X(TOO_MANY_READERS, -1026, "all ring reader slots are in use")             \
    X(BAD_OPTION, -1027, "an option is out of range")                          \
    X(BAD_FILTER, -1028, "read filter is invalid")                             \
    X(TIME_INVALID, -1029, "event time is negative")                           \
    X(TABLE_FULL, -1100, "stream table is full (max_endpoints)")               \
    X(BREAKER_OPEN, -1101, "circuit breaker is open for this stream")          \
    X(THROTTLED, -1102, "stream is throttled")                                 \
    X(BAD_OUTCOME, -1103, "outcome is not success or failure")                 \
    X(BAD_BREAKER_STATE, -1104, "breaker state is not closed, open or "       \
                                "half_open")                                   \
    X(THROTTLE_BATCH, -1105,                                                   \
      "batch is larger than stream_burst: the throttle can never admit it")    \
    X(STALE_OUTCOME, -1106,                                                    \
      "outcome's breaker epoch is not current; breaker unchanged")             \
    X(GUARD_TOO_LARGE, -1200, "payload is larger than allowed")                \
    X(GUARD_BOMB_RATIO, -1201,                                                 \
      "decompression exceeded max_compression_ratio")                          \
    X(GUARD_BOMB_SIZE, -1202,                                                  \
      "decompression exceeded max_decompressed_bytes")                         \
    X(GUARD_TOO_MANY_LAYERS, -1203,                                            \
      "compressed layers exceed max_decode_layers")                            \
    X(GUARD_UNSUPPORTED_ENCODING, -1204, "unsupported compression encoding")   \
    X(GUARD_CORRUPT_ENCODING, -1205, "compressed data is corrupt or truncated")\
    X(GUARD_JSON_DEPTH, -1206, "JSON nesting exceeds max_json_depth")          \
    X(GUARD_JSON_SYNTAX, -1207, "payload is not valid JSON")                   \
    X(GUARD_JSON_STRING, -1208, "JSON string exceeds max_json_string_bytes")   \
    X(GUARD_JSON_MEMBERS, -1209,                                               \
      "JSON object or array exceeds max_json_members")                         \
    X(GUARD_UTF8, -1210, "payload is not valid UTF-8")                         \
    X(GUARD_PATTERN, -1211, "payload matched a blocking pattern")              \
    X(GUARD_PATTERN_COMPILE, -1212, "a guard pattern failed to compile")       \
    X(GUARD_PATTERN_FILE, -1213, "guard pattern file is malformed")            \
    X(GUARD_JSON_DUPLICATE_KEY, -1214, "JSON object has a duplicate key")      \
    X(GUARD_WINDOW_TOO_LARGE, -1215,                                           \
      "compressed frame needs a larger window than allowed")                   \
    X(METRIC_NAME, -1300, "metric name is not a valid Prometheus name")        \
    X(METRIC_LABEL_NAME, -1301, "label name is not a valid Prometheus name")   \
    X(METRIC_TYPE_MISMATCH, -1302,                                             \
      "metric already registered with another type")                           \
    X(METRIC_HELP_MISMATCH, -1303,                                             \
      "metric already registered with another help text")                      \
    X(METRIC_LABELS_MISMATCH, -1304,                                           \
      "metric already registered with other label names")                      \
    X(METRIC_TOO_MANY_LABELS, -1305, "too many label names or values")         \
    X(METRIC_BUCKETS, -1306,                                                   \
      "histogram buckets must be 1 to 16 increasing finite values")            \
    X(METRIC_FULL, -1307, "metrics registry is full")                          \
    X(METRIC_BUFFER, -1308, "export buffer too small")                         \
    X(METRIC_LABEL_VALUE, -1309,                                               \
      "label value or help text is too long or not valid UTF-8")               \
    X(IO, -1400, "I/O error")                                                  \
    X(CORRUPT, -1401, "log data is corrupt")                                   \
    X(FORMAT_VERSION, -1402, "unsupported data format version")                \
    X(LOCKED, -1403, "data directory is locked by another process")            \
    X(FSM_INVALID_TRANSITION, -1500,                                           \
      "event is not a valid transition from the current state")                \
    X(FSM_GUARD_REJECTED, -1501, "transition guard rejected the event")        \
    X(FSM_DEFINITION, -1502, "state machine definition is invalid")            \
    X(SUBSCRIBER_LAGGED, -1503, "subscriber missed events removed by "        \
                                "retention")                                   \
    X(PROJECTION_UNKNOWN, -1504, "unknown projection")                         \
    X(TIMEOUT, -1505, "timed out")                                             \
    X(FSM_UNKNOWN_NAME, -1506,                                                 \
      "name is not a state or trigger of the state machine")                  \
    X(BUS_EXISTS, -1507, "the log already has a bus")                          \
    X(BUS_FULL, -1508, "too many bus subscribers or handlers")                 \
    X(PROJECTION_STATE_TOO_LARGE, -1509,                                       \
      "projection state would exceed its state_max")                           \
    X(PROJECTION_EXISTS, -1510, "a projection with this name exists")          \
    X(CONFIG_KEY, -1600, "unknown configuration key")                          \
    X(CONFIG_VALUE, -1601, "bad configuration value")                          \
    X(CONFIG_FILE, -1602, "configuration file cannot be read")

enum cairn_errno {
#define CAIRN__ERR_ENUM(name, value, msg) CAIRN_E##name = (value),
    CAIRN_ERRNO_MAP(CAIRN__ERR_ENUM)
#undef CAIRN__ERR_ENUM
};

/* "0.1.0": the library's version string; static storage. */
CAIRN_EXPORT const char *cairn_version(void);
/* CAIRN_VERSION_NUMBER of the linked library. */
CAIRN_EXPORT unsigned cairn_version_number(void);

/*
 * A message for any code this library returns: cairn codes from the table,
 * -errno through strerror, anything else "unknown error".  Static storage,
 * thread-safe.
 */
CAIRN_EXPORT const char *cairn_strerror(int err);
/* "CAIRN_EVERSION_CONFLICT", "ENOENT", ...; static storage, thread-safe. */
CAIRN_EXPORT const char *cairn_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_CAIRN_H */
