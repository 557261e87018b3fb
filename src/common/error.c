/*
 * error.c — cairn_strerror() and cairn_err_name(), generated from the one
 * error table in include/cairn/cairn.h, and the version functions.
 */
#include <string.h>

#include "cairn/cairn.h"

const char *cairn_version(void) { return CAIRN_VERSION_STRING; }

unsigned cairn_version_number(void) { return CAIRN_VERSION_NUMBER; }

const char *cairn_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define CAIRN__ERR_MSG(name, value, msg)                                       \
    case value:                                                                \
        return msg;
        CAIRN_ERRNO_MAP(CAIRN__ERR_MSG)
#undef CAIRN__ERR_MSG
    default:
        break;
    }
    /* strerror() may use a static buffer for unknown values; every errno
     * value Linux defines has a constant string, which is all we pass. */
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *cairn_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define CAIRN__ERR_NAME(name, value, msg)                                      \
    case value:                                                                \
        return "CAIRN_E" #name;
        CAIRN_ERRNO_MAP(CAIRN__ERR_NAME)
#undef CAIRN__ERR_NAME
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        const char *n = strerrorname_np(-err);
        if (n)
            return n;
    }
    return "UNKNOWN";
}
