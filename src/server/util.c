/*
 * util.c — string buffer, JSON escaping, times and URL decoding for the
 * HTTP server.
 *
 * Events go out as JSON written here rather than through jansson: a JSON
 * payload is stored already validated (guards), so it is copied verbatim
 * into the output, where building a jansson tree would parse it again.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "server/util.h"

static int sb_grow(sb_t *b, size_t need)
{
    if (b->oom)
        return -1;
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void sb_put(sb_t *b, const void *p, size_t n)
{
    if (sb_grow(b, n) < 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void sb_puts(sb_t *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(sb_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sb_grow(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_json_str(sb_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (sb_grow(b, n + 2) < 0)
        return;
    b->data[b->len++] = '"';
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_put(b, s + start, i - start);
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        sb_put(b, esc, el);
        start = i + 1;
    }
    sb_put(b, s + start, n - start);
    sb_put(b, "\"", 1);
}

void sb_free(sb_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void fmt_time(int64_t ns, char buf[40])
{
    int64_t sec = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%09lldZ", (long long)frac);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int parse_time(const char *s, size_t n, int64_t *ns)
{
    int Y, M, D, h, m, sec;
    if (n < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) ||
        s[7] != '-' || digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &m) ||
        s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    size_t i = 19;
    int64_t frac = 0;
    if (i < n && s[i] == '.') {
        int nd = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, nd++)
            if (nd < 9)
                frac = frac * 10 + (s[i] - '0');
        if (nd == 0)
            return -1;
        for (; nd < 9; nd++)
            frac *= 10;
    }
    int64_t off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om))
            return -1;
        off = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
        i += 6;
    } else {
        return -1;
    }
    if (i != n)
        return -1;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *ns = ((int64_t)t - off) * 1000000000 + frac;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *url_decode(const char *s, size_t n, int query, size_t *len)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (query && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = 0;
    *len = o;
    return out;
}

int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

char *b64_encode(const void *p, size_t n, size_t *outlen)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (!out)
        return NULL;
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    *outlen = strlen(out);
    return out;
}

void *b64_decode(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out = malloc(n / 4 * 3 + 3);
    if (!out)
        return NULL;
    size_t len;
    if (sodium_base642bin(out, n / 4 * 3 + 3, s, n, NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(out);
        return NULL;
    }
    *outlen = len;
    return out;
}

void sb_event_json(sb_t *b, const cairn_event_t *ev)
{
    char t[40];
    fmt_time(ev->time_ns, t);
    sb_printf(b, "{\"seq\":%llu,\"stream\":", (unsigned long long)ev->seq);
    sb_json_str(b, ev->stream, ev->stream_len);
    sb_printf(b, ",\"version\":%llu,\"type\":", (unsigned long long)ev->version);
    sb_json_str(b, ev->type, ev->type_len);
    sb_printf(b, ",\"time\":\"%s\"", t);
    if (ev->id_len) {
        sb_puts(b, ",\"id\":");
        sb_json_str(b, ev->id, ev->id_len);
    }
    if (ev->correlation_id_len) {
        sb_puts(b, ",\"correlation_id\":");
        sb_json_str(b, ev->correlation_id, ev->correlation_id_len);
    }
    if (ev->causation_id_len) {
        sb_puts(b, ",\"causation_id\":");
        sb_json_str(b, ev->causation_id, ev->causation_id_len);
    }
    if (ev->flags & CAIRN_EVENT_JSON) {
        sb_puts(b, ",\"data\":");
        if (ev->payload_len)
            sb_put(b, ev->payload, ev->payload_len);
        else
            sb_puts(b, "null");
    } else {
        size_t n;
        char *enc = b64_encode(ev->payload, ev->payload_len, &n);
        sb_puts(b, ",\"data_base64\":\"");
        if (enc)
            sb_put(b, enc, n);
        else
            b->oom = 1;
        free(enc);
        sb_puts(b, "\"");
    }
    sb_puts(b, "}");
}
