/*
 * utf8.c — the guards' public UTF-8 checks, on the shared validator in
 * src/common/utf8.c.
 */
#include "guard/guard_internal.h"
#include "internal/utf8.h"

int cairn_guard_utf8_check(const void *p, size_t len, size_t *bad_offset)
{
    size_t ok = cairn__utf8_valid_prefix(p, len);
    if (bad_offset)
        *bad_offset = ok;
    return ok == len ? 0 : CAIRN_EGUARD_UTF8;
}

int cairn_guard_utf8_valid(const void *p, size_t len)
{
    return cairn__utf8_valid_prefix(p, len) == len;
}
