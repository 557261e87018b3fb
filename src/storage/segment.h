/*
 * segment.h (internal) — the on-disk segment format (docs/FORMAT.md,
 * "Segments") and the scanner shared by recovery, reads and `cairn verify`.
 *
 * A segment file "<first seq, 20 digits>.seg" holds a 64-byte header and
 * then records back to back, each 8-byte aligned.  All integers are
 * little-endian.
 *
 *   header  off size field
 *            0   8   magic "CAIRNSEG"
 *            8   4   format version (1)
 *           12   4   header size (64)
 *           16   8   first seq
 *           24   8   created, ns since the epoch
 *           32   4   CRC32C of bytes 0..31
 *           36  28   zero
 *
 *   record  off size field
 *            0   4   CRC32C (ISA-L crc32_iscsi, seed 0) of bytes 4..rec_len-1
 *            4   4   marker "CRec"
 *            8  ..   exactly the ring record from its offset 8 on
 *                    (src/log/record.h): rec_len, payload_len, seq,
 *                    version, time, lengths, flags, then the strings and
 *                    payload and zero padding to rec_len
 *
 * The CRC covers every header field after itself, so a flipped bit in a
 * length or a seq is caught like one in the payload, and the seq inside
 * each record catches stale bytes in a preallocated or reused file.
 * Sealed segments may be compressed whole with zstd ("<seq>.seg.zst"); the
 * decompressed bytes are the same format.
 */
#ifndef CAIRN_STORAGE_SEGMENT_H
#define CAIRN_STORAGE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/log.h"

#define CAIRN__SEG_MAGIC "CAIRNSEG"
#define CAIRN__SEG_VERSION 1u
#define CAIRN__SEG_HDR 64u
#define CAIRN__REC_MARKER 0x63655243u /* "CRec" little-endian */

/* Write a segment header for first_seq into hdr[64]. */
void cairn__seg_header(uint8_t hdr[CAIRN__SEG_HDR], uint64_t first_seq,
                       int64_t created_ns);

/* Check a header; returns 0 and *first_seq, CAIRN_ECORRUPT, or
 * CAIRN_EFORMAT_VERSION. */
int cairn__seg_header_check(const uint8_t *hdr, size_t len,
                            uint64_t *first_seq);

/* Turn the ring record at rec (rec_len bytes) into its disk form at out. */
void cairn__seg_encode(uint8_t *out, const uint8_t *rec, uint32_t rec_len);

/*
 * Check the record at data[off..len): on success returns its length and
 * fills ev (pointers into data); returns 0 at a clean end (a zero length
 * field, as in preallocated space, or fewer than 8 bytes left), or a
 * negative code: CAIRN_ECORRUPT (bad length, marker or CRC).  expect_seq,
 * when non-zero, must equal the record's seq (else CAIRN_ECORRUPT).
 */
long cairn__seg_record(const uint8_t *data, size_t len, size_t off,
                       uint64_t expect_seq, cairn_event_t *ev);

/* "<dir>/<20-digit seq>.seg" (compressed: ".seg.zst"). */
int cairn__seg_path(char *buf, size_t len, const char *dir, uint64_t seq,
                    int compressed);

/* Parse a directory entry name; 1 and *seq, *compressed when it is a
 * segment file, else 0. */
int cairn__seg_name(const char *name, uint64_t *seq, int *compressed);

/*
 * Load a whole segment file into memory for scanning: plain files are
 * mapped read-only, compressed ones decompressed into a malloc'd buffer.
 * *owned says which (1: free(), 0: munmap(*data, *len)).
 */
int cairn__seg_load(const char *path, int compressed, uint8_t **data,
                    size_t *len, int *owned);
void cairn__seg_unload(uint8_t *data, size_t len, int owned);

#endif
