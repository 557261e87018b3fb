/*
 * utf8.c — strict UTF-8 validation (see src/internal/utf8.h).
 *
 * An ASCII fast path checks eight bytes at a time; multi-byte sequences are
 * checked against the well-formed byte ranges of Unicode 15, table 3-7,
 * which excludes overlongs and surrogates by construction.
 */
#include <stdint.h>
#include <string.h>

#include "internal/utf8.h"

int cairn__utf8_check(const void *s, size_t len, int no_controls)
{
    const unsigned char *p = s, *end = p + len;

    while (p < end) {
        if (!no_controls && end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                p += 8;
                continue;
            }
        }
        unsigned c = *p;
        if (c < 0x80) {
            if (no_controls && (c < 0x20 || c == 0x7f))
                return -1;
            p++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong below U+0800 */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong below U+10000 */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
        }
        if ((size_t)(end - p) < n)
            return 0;
        if (p[1] < lo || p[1] > hi)
            return 0;
        for (size_t i = 2; i < n; i++)
            if (p[i] < 0x80 || p[i] > 0xbf)
                return 0;
        /* C1 controls are U+0080..U+009F: C2 80 .. C2 9F. */
        if (no_controls && c == 0xc2 && p[1] <= 0x9f)
            return -1;
        p += n;
    }
    return 1;
}
