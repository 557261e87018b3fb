/*
 * utf8.c — strict UTF-8 validation (Unicode 15, Table 3-7), shared by the
 * event model (names, types, ids) and the payload guards.
 *
 * Well-formed sequences only: no overlong forms (C0, C1, E0 80..9F,
 * F0 80..8F), no surrogates (ED A0..BF), nothing above U+10FFFF (F4 90..BF,
 * F5..FF), no stray continuation bytes, no sequence cut short by the end of
 * the input.  The second byte's allowed range depends on the lead byte,
 * which is what lead_of encodes; later continuation bytes are always
 * 80..BF.  Runs of ASCII are skipped eight bytes at a time since that is
 * what almost every payload is made of.
 */
#include <stdint.h>
#include <string.h>

#include "internal/utf8.h"

/* For a lead byte: sequence length (0 = never valid as a lead) and the
 * range its second byte must fall in. */
struct lead {
    unsigned char len, lo, hi;
};

static struct lead lead_of(unsigned char b)
{
    struct lead l = {0, 0x80, 0xBF};
    if (b >= 0xC2 && b <= 0xDF)
        l.len = 2;
    else if (b == 0xE0)
        l.len = 3, l.lo = 0xA0;      /* below A0 is overlong */
    else if (b == 0xED)
        l.len = 3, l.hi = 0x9F;      /* A0..BF would be a surrogate */
    else if (b >= 0xE1 && b <= 0xEF)
        l.len = 3;
    else if (b == 0xF0)
        l.len = 4, l.lo = 0x90;      /* below 90 is overlong */
    else if (b == 0xF4)
        l.len = 4, l.hi = 0x8F;      /* 90.. would exceed U+10FFFF */
    else if (b >= 0xF1 && b <= 0xF3)
        l.len = 4;
    return l;
}

size_t cairn__utf8_seq(const unsigned char *p, size_t avail)
{
    struct lead l = lead_of(p[0]);
    if (l.len == 0 || avail < l.len)
        return 0;
    if (p[1] < l.lo || p[1] > l.hi)
        return 0;
    for (unsigned k = 2; k < l.len; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    return l.len;
}

size_t cairn__utf8_valid_prefix(const unsigned char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            /* Skip whole words of ASCII: no byte has its top bit set. */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            while (i < len && p[i] < 0x80)
                i++;
            continue;
        }
        size_t n = cairn__utf8_seq(p + i, len - i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

int cairn__utf8_check(const void *s, size_t len, int no_controls)
{
    const unsigned char *p = s;
    if (!no_controls)
        return cairn__utf8_valid_prefix(p, len) == len;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return -1; /* C0 control or DEL */
            i++;
            continue;
        }
        size_t n = cairn__utf8_seq(p + i, len - i);
        if (n == 0)
            return 0;
        if (c == 0xc2 && p[i + 1] <= 0x9f)
            return -1; /* C1 control, U+0080..U+009F */
        i += n;
    }
    return 1;
}
