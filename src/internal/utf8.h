/* utf8.h — strict UTF-8 validation shared by the event model and guards. */
#ifndef CAIRN_INTERNAL_UTF8_H
#define CAIRN_INTERNAL_UTF8_H

#include <stddef.h>

/*
 * Returns 1 if s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates U+D800..U+DFFF, nothing above U+10FFFF, no truncated
 * sequence), else 0.  When no_controls is set, C0 controls (U+0000..U+001F),
 * DEL and C1 controls (U+0080..U+009F) also fail, returning -1 instead so a
 * caller can tell the two causes apart.
 */
int cairn__utf8_check(const void *s, size_t len, int no_controls);

/* Length of the well-formed sequence starting at p (1..4), or 0 when it is
 * not one; avail bytes are readable. */
size_t cairn__utf8_seq(const unsigned char *p, size_t avail);

/* Bytes of p[0..len) that are well-formed UTF-8 from the start. */
size_t cairn__utf8_valid_prefix(const unsigned char *p, size_t len);

#endif
