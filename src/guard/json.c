/*
 * json.c — iterative JSON validation (RFC 8259) under depth, string, member
 * and duplicate-key limits, and the unescaping pass that builds the text
 * patterns are scanned over.
 *
 * The validator is a loop over a small state machine with an explicit stack
 * of open containers (struct cairn__json_level), so nesting costs 12 bytes
 * per level of workspace and never the C stack; the stack is sized to
 * max_json_depth and opening one container more is CAIRN_EGUARD_JSON_DEPTH
 * at that byte, so "[[[[..." a million deep stops after max_json_depth + 1
 * bytes.  Strings are checked for strict UTF-8 and for well-formed escapes,
 * including surrogate pairs in \u escapes (a lone or reversed surrogate is
 * CAIRN_EGUARD_UTF8: the decoded string would not be UTF-8).
 *
 * Duplicate keys (policy: rejected within one object, comparing decoded
 * keys, so "a" and "\u0061" are the same key).  Keys of the objects that
 * are open are kept in one array in document order, each object owning the
 * tail from its keys_base; closing an object truncates the array.  While an
 * object has at most SMALL_OBJECT keys a new key is compared with each of
 * them (a length compare rejects almost all at once).  When an object grows
 * past that, its keys go into an open-addressing table (linear probing)
 * keyed by a SipHash of the decoded key (libsodium crypto_shorthash) with a
 * per-workspace random key, so an attacker cannot aim many keys at one
 * probe chain; a hash match is confirmed by comparing the decoded keys.
 * Entries are only ever removed in the reverse order of insertion (when
 * their object closes), and removing the newest entry of a linear-probing
 * table by clearing its slot leaves the table exactly as if it had never
 * been inserted, so no tombstones are needed.  Cost: O(1) expected per key,
 * memory O(keys of open objects) <= O(input), bounded also by
 * max_json_members per object.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "guard/guard_internal.h"

#define SMALL_OBJECT 16
#define ARRAY_LEVEL UINT32_MAX

/* Bytes the string scanner must stop at: '"', '\\', controls, non-ASCII. */
static const unsigned char stop_byte[256] = {
    [0x00 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xFF] = 1,
};

/* Non-zero when one of the 8 bytes in w is a stop byte.  Exact as an
 * "any" test: a byte >= 0x80 sets its top bit directly; for the others,
 * (x - 0x01..) & ~x has a top bit set iff some byte of x is zero (borrows
 * only start at a zero byte), applied to w ^ '"', w ^ '\\' and, with 0x20
 * subtracted, to bytes below 0x20. */
static uint64_t word_has_stop(uint64_t w)
{
    const uint64_t ones = UINT64_C(0x0101010101010101);
    const uint64_t high = UINT64_C(0x8080808080808080);
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    uint64_t zero_q = (q - ones) & ~q, zero_b = (b - ones) & ~b;
    uint64_t ctl = (w - ones * 0x20) & ~w;
    return (w | zero_q | zero_b | ctl) & high;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static int hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decode the escape at p (p[0] == '\\') of already validated text into o;
 * returns the bytes written and advances *adv by the bytes consumed.
 */
static size_t unescape_one(const unsigned char *p, unsigned char *o,
                           size_t *adv)
{
    uint32_t cp, lo;
    *adv = 2;
    switch (p[1]) {
    case 'b': *o = '\b'; return 1;
    case 'f': *o = '\f'; return 1;
    case 'n': *o = '\n'; return 1;
    case 'r': *o = '\r'; return 1;
    case 't': *o = '\t'; return 1;
    case 'u':
        hex4(p + 2, &cp);
        *adv = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            hex4(p + 8, &lo);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            *adv = 12;
        }
        return utf8_put(cp, o);
    default: /* '"', '\\', '/' */
        *o = p[1];
        return 1;
    }
}

size_t cairn__json_unescape(const unsigned char *p, size_t len,
                            unsigned char *out)
{
    size_t i = 0, w = 0;
    while (i < len) {
        const unsigned char *bs = memchr(p + i, '\\', len - i);
        size_t run = bs ? (size_t)(bs - (p + i)) : len - i;
        memcpy(out + w, p + i, run);
        w += run;
        i += run;
        if (!bs)
            break;
        size_t adv;
        w += unescape_one(p + i, out + w, &adv);
        i += adv;
    }
    return w;
}

/* Validation state: everything the loop and its helpers share. */
struct jv {
    const cairn_guard_opts_t *o;
    const unsigned char *p;
    size_t len;
    cairn_guard_result_t *res;
    struct cairn__guard_ws *ws;
    size_t nkeys;
    int has_escapes;
};

/*
 * Scan the string whose opening quote is at *i.  On success *i is past the
 * closing quote and *escaped says whether it held escapes.
 */
static int scan_string(struct jv *v, size_t *i, int *escaped)
{
    const unsigned char *p = v->p;
    size_t len = v->len, start = *i + 1, j = start;
    size_t max = v->o->max_json_string_bytes;
    *escaped = 0;
    for (;;) {
        /* Plain string bytes, eight at a time, then one at a time up to
         * the stop byte. */
        while (len - j >= 8) {
            uint64_t w;
            memcpy(&w, p + j, 8);
            if (word_has_stop(w))
                break;
            j += 8;
        }
        while (j < len && !stop_byte[p[j]])
            j++;
        if (j - start > max)
            return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_STRING,
                                     "max_json_string_bytes", max,
                                     start + max);
        if (j >= len)
            return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                     0, len);
        unsigned char c = p[j];
        if (c == '"') {
            *i = j + 1;
            return 0;
        }
        if (c < 0x20)
            return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                     0, j);
        if (c >= 0x80) {
            size_t n = cairn__utf8_seq(p + j, len - j);
            if (n == 0)
                return cairn__guard_fail(v->res, CAIRN_EGUARD_UTF8, NULL, 0,
                                         j);
            j += n;
            continue;
        }
        /* A backslash escape. */
        *escaped = 1;
        if (j + 1 >= len)
            return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                     0, len);
        switch (p[j + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            j += 2;
            break;
        case 'u': {
            uint32_t cp, lo;
            if (len - j < 6 || hex4(p + j + 2, &cp) != 0)
                return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_SYNTAX,
                                         NULL, 0, j);
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return cairn__guard_fail(v->res, CAIRN_EGUARD_UTF8, NULL, 0,
                                         j);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* Needs a low surrogate escape right after it. */
                if (len - j < 12 || p[j + 6] != '\\' || p[j + 7] != 'u' ||
                    hex4(p + j + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return cairn__guard_fail(v->res, CAIRN_EGUARD_UTF8, NULL,
                                             0, j);
                j += 12;
            } else {
                j += 6;
            }
            break;
        }
        default:
            return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                     0, j);
        }
    }
}

/* Next decoded code point of a validated string body; advances *i. */
static uint32_t next_cp(const unsigned char *p, size_t *i)
{
    unsigned char c = p[*i];
    if (c == '\\') {
        unsigned char tmp[4];
        size_t adv, n = unescape_one(p + *i, tmp, &adv);
        *i += adv;
        if (n == 1)
            return tmp[0];
        /* Re-read the code point from the escape digits. */
        uint32_t cp, lo;
        hex4(p + *i - adv + 2, &cp);
        if (adv == 12) {
            hex4(p + *i - 4, &lo);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        return cp;
    }
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    /* Validated UTF-8: the lead byte gives the length. */
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    uint32_t cp = c & (0x7F >> n);
    for (size_t k = 1; k < n; k++)
        cp = (cp << 6) | (p[*i + k] & 0x3F);
    *i += n;
    return cp;
}

static int keys_equal(const unsigned char *p, const struct cairn__json_key *a,
                      const struct cairn__json_key *b)
{
    if (!a->escaped && !b->escaped)
        return a->raw_len == b->raw_len &&
               memcmp(p + a->offset, p + b->offset, a->raw_len) == 0;
    size_t i = a->offset, j = b->offset;
    size_t ie = i + a->raw_len, je = j + b->raw_len;
    while (i < ie && j < je)
        if (next_cp(p, &i) != next_cp(p, &j))
            return 0;
    return i == ie && j == je;
}

static int key_hash(struct jv *v, struct cairn__json_key *k)
{
    const unsigned char *src = v->p + k->offset;
    size_t n = k->raw_len;
    if (k->escaped) {
        /* Decoding never grows the text. */
        int rc = cairn__guard_reserve((void **)&v->ws->key_tmp,
                                      &v->ws->key_tmp_cap, n ? n : 1, 1);
        if (rc)
            return rc;
        n = cairn__json_unescape(src, n, v->ws->key_tmp);
        src = v->ws->key_tmp;
    }
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, src, n, v->ws->hash_key);
    memcpy(&k->hash, h, sizeof k->hash);
    return 0;
}

/* Insert keys[idx] into the table; the caller has ensured room. */
static void table_put(struct cairn__guard_ws *ws, size_t idx)
{
    ws->slots_dirty = 1;
    size_t mask = ws->slots_cap - 1;
    size_t s = (size_t)(ws->keys[idx].hash ^ ws->keys[idx].object) & mask;
    while (ws->slots[s])
        s = (s + 1) & mask;
    ws->slots[s] = (uint32_t)idx + 1;
}

static void table_remove(struct cairn__guard_ws *ws, size_t idx)
{
    size_t mask = ws->slots_cap - 1;
    size_t s = (size_t)(ws->keys[idx].hash ^ ws->keys[idx].object) & mask;
    while (ws->slots[s] != idx + 1)
        s = (s + 1) & mask;
    ws->slots[s] = 0;
}

/* Keys of open object level d: [keys_base, end). */
static size_t level_keys_end(const struct jv *v,
                             const struct cairn__json_level *lv, size_t d,
                             size_t depth)
{
    /* A deeper level opened when this object had its last key, and the
     * object cannot gain keys while it is open. */
    return d + 1 < depth ? lv[d + 1].keys_base : v->nkeys;
}

/*
 * Make room for one more entry (at most half full).  On growth, re-insert
 * the keys of every hashed object (more than SMALL_OBJECT keys), oldest
 * first so removal stays newest-first.
 */
static int table_reserve(struct jv *v, const struct cairn__json_level *lv,
                         size_t depth)
{
    struct cairn__guard_ws *ws = v->ws;
    size_t need = v->nkeys + 1;
    if (need * 2 <= ws->slots_cap)
        return 0;
    size_t cap = ws->slots_cap ? ws->slots_cap : 64;
    while (need * 2 > cap)
        cap *= 2;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    free(ws->slots);
    ws->slots = slots;
    ws->slots_cap = cap;
    for (size_t d = 0; d < depth; d++) {
        if (lv[d].object == ARRAY_LEVEL)
            continue;
        size_t end = level_keys_end(v, lv, d, depth);
        if (end - lv[d].keys_base > SMALL_OBJECT)
            for (size_t k = lv[d].keys_base; k < end; k++)
                table_put(ws, k);
    }
    return 0;
}

/*
 * Record the key just scanned for the innermost object (level d of depth)
 * and fail if the object already has it.
 */
static int add_key(struct jv *v, struct cairn__json_level *lv, size_t depth,
                   size_t off, size_t raw_len, int escaped)
{
    struct cairn__guard_ws *ws = v->ws;
    struct cairn__json_level *top = &lv[depth - 1];
    int rc = cairn__guard_reserve((void **)&ws->keys, &ws->keys_cap,
                                  v->nkeys + 1, sizeof *ws->keys);
    if (rc)
        return rc;
    struct cairn__json_key *k = &ws->keys[v->nkeys];
    k->hash = 0;
    k->object = top->object;
    k->offset = (uint32_t)off;
    k->raw_len = (uint32_t)raw_len;
    k->escaped = (uint32_t)escaped;
    size_t have = v->nkeys - top->keys_base;

    if (have < SMALL_OBJECT) {
        for (size_t j = top->keys_base; j < v->nkeys; j++)
            if (keys_equal(v->p, &ws->keys[j], k))
                return cairn__guard_fail(v->res,
                                         CAIRN_EGUARD_JSON_DUPLICATE_KEY,
                                         NULL, 0, off - 1);
        v->nkeys++;
        return 0;
    }
    if (!ws->hash_keyed) {
        randombytes_buf(ws->hash_key, sizeof ws->hash_key);
        ws->hash_keyed = 1;
    }
    if ((rc = key_hash(v, k)) != 0)
        return rc;
    if ((rc = table_reserve(v, lv, depth)) != 0)
        return rc;
    if (have == SMALL_OBJECT) {
        /* The object just outgrew linear search: hash and index its keys
         * (the newest entries, so insertion order is kept). */
        for (size_t j = top->keys_base; j < v->nkeys; j++) {
            if ((rc = key_hash(v, &ws->keys[j])) != 0)
                return rc;
            table_put(ws, j);
        }
    }
    size_t mask = ws->slots_cap - 1;
    size_t s = (size_t)(k->hash ^ k->object) & mask;
    for (; ws->slots[s]; s = (s + 1) & mask) {
        const struct cairn__json_key *o = &ws->keys[ws->slots[s] - 1];
        if (o->hash == k->hash && o->object == k->object &&
            keys_equal(v->p, o, k))
            return cairn__guard_fail(v->res, CAIRN_EGUARD_JSON_DUPLICATE_KEY,
                                     NULL, 0, off - 1);
    }
    ws->slots[s] = (uint32_t)v->nkeys + 1;
    ws->slots_dirty = 1;
    v->nkeys++;
    return 0;
}

/* Drop the keys of the object being closed (newest first: see DESIGN). */
static void close_object(struct jv *v, const struct cairn__json_level *top)
{
    if (v->nkeys - top->keys_base > SMALL_OBJECT)
        for (size_t k = v->nkeys; k-- > top->keys_base;)
            table_remove(v->ws, k);
    v->nkeys = top->keys_base;
}

static size_t scan_number(const unsigned char *p, size_t len, size_t i)
{
    size_t s = i;
    if (i < len && p[i] == '-')
        i++;
    if (i < len && p[i] == '0') {
        i++;
    } else if (i < len && p[i] >= '1' && p[i] <= '9') {
        while (i < len && p[i] >= '0' && p[i] <= '9')
            i++;
    } else {
        return 0;
    }
    if (i < len && p[i] == '.') {
        size_t d = ++i;
        while (i < len && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-'))
            i++;
        size_t d = i;
        while (i < len && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i - s;
}

enum state {
    S_ROOT,        /* the top-level value */
    S_MEMBER_VALUE, /* after ':' */
    S_ARRAY_FIRST, /* after '[': a value or ']' */
    S_ARRAY_NEXT,  /* after ',' in an array */
    S_OBJECT_FIRST, /* after '{': a key or '}' */
    S_OBJECT_NEXT, /* after ',' in an object */
    S_AFTER_VALUE  /* a value ended: ',', a closer, or the end */
};

int cairn__json_validate(const cairn_guard_opts_t *o, const unsigned char *p,
                         size_t len, cairn_guard_result_t *res,
                         int *has_escapes)
{
    struct jv v = {.o = o, .p = p, .len = len, .res = res};
    v.ws = cairn__guard_ws(res);
    if (!v.ws)
        return cairn__guard_fail(res, -ENOMEM, NULL, 0, 0);
    if (len > UINT32_MAX)
        return cairn__guard_fail(res, CAIRN_EGUARD_TOO_LARGE, NULL, 0, 0);
    int rc = cairn__guard_reserve((void **)&v.ws->levels, &v.ws->levels_cap,
                                  o->max_json_depth ? o->max_json_depth : 1,
                                  sizeof *v.ws->levels);
    if (rc)
        return cairn__guard_fail(res, rc, NULL, 0, 0);
    if (v.ws->slots_dirty) {
        /* A failed validation left entries of objects it never closed. */
        memset(v.ws->slots, 0, v.ws->slots_cap * sizeof *v.ws->slots);
        v.ws->slots_dirty = 0;
    }
    struct cairn__json_level *lv = v.ws->levels;
    size_t depth = 0, i = 0;
    uint32_t objects = 0;
    enum state st = S_ROOT;

    for (;;) {
        while (i < len && is_ws(p[i]))
            i++;
        if (st == S_AFTER_VALUE) {
            if (depth == 0) {
                if (i != len)
                    return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX,
                                             NULL, 0, i);
                break;
            }
            struct cairn__json_level *top = &lv[depth - 1];
            int is_array = top->object == ARRAY_LEVEL;
            if (i < len && p[i] == ',') {
                st = is_array ? S_ARRAY_NEXT : S_OBJECT_NEXT;
                i++;
            } else if (i < len && p[i] == (is_array ? ']' : '}')) {
                if (!is_array)
                    close_object(&v, top);
                depth--;
                i++;
            } else {
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                         0, i);
            }
            continue;
        }
        if (i >= len)
            return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX, NULL, 0,
                                     i);
        unsigned char c = p[i];

        if (st == S_OBJECT_FIRST || st == S_OBJECT_NEXT) {
            struct cairn__json_level *top = &lv[depth - 1];
            if (c == '}' && st == S_OBJECT_FIRST) {
                close_object(&v, top);
                depth--;
                i++;
                st = S_AFTER_VALUE;
                continue;
            }
            if (c != '"')
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                         0, i);
            if (++top->members > o->max_json_members)
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_MEMBERS,
                                         "max_json_members",
                                         o->max_json_members, i);
            size_t kstart = i + 1;
            int esc;
            if ((rc = scan_string(&v, &i, &esc)) != 0)
                return rc;
            v.has_escapes |= esc;
            if (!o->allow_duplicate_keys) {
                rc = add_key(&v, lv, depth, kstart, i - 1 - kstart, esc);
                if (rc == -ENOMEM)
                    return cairn__guard_fail(res, rc, NULL, 0, 0);
                if (rc)
                    return rc;
            }
            while (i < len && is_ws(p[i]))
                i++;
            if (i >= len || p[i] != ':')
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                         0, i);
            i++;
            st = S_MEMBER_VALUE;
            continue;
        }

        if (st == S_ARRAY_FIRST || st == S_ARRAY_NEXT) {
            struct cairn__json_level *top = &lv[depth - 1];
            if (c == ']' && st == S_ARRAY_FIRST) {
                depth--;
                i++;
                st = S_AFTER_VALUE;
                continue;
            }
            if (++top->members > o->max_json_members)
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_MEMBERS,
                                         "max_json_members",
                                         o->max_json_members, i);
        }

        /* A value. */
        if (c == '{' || c == '[') {
            if (depth >= o->max_json_depth)
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_DEPTH,
                                         "max_json_depth", o->max_json_depth,
                                         i);
            struct cairn__json_level *nl = &lv[depth++];
            nl->members = 0;
            nl->keys_base = (uint32_t)v.nkeys;
            if (c == '{') {
                nl->object = objects++;
                st = S_OBJECT_FIRST;
            } else {
                nl->object = ARRAY_LEVEL;
                st = S_ARRAY_FIRST;
            }
            i++;
            continue;
        }
        if (c == '"') {
            int esc;
            if ((rc = scan_string(&v, &i, &esc)) != 0)
                return rc;
            v.has_escapes |= esc;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t n = scan_number(p, len, i);
            if (n == 0)
                return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX, NULL,
                                         0, i);
            i += n;
        } else if (c == 't' && len - i >= 4 && memcmp(p + i, "true", 4) == 0) {
            i += 4;
        } else if (c == 'f' && len - i >= 5 &&
                   memcmp(p + i, "false", 5) == 0) {
            i += 5;
        } else if (c == 'n' && len - i >= 4 && memcmp(p + i, "null", 4) == 0) {
            i += 4;
        } else {
            return cairn__guard_fail(res, CAIRN_EGUARD_JSON_SYNTAX, NULL, 0,
                                     i);
        }
        st = S_AFTER_VALUE;
    }
    /* Every object closed, so every table entry was removed. */
    v.ws->slots_dirty = 0;
    if (has_escapes)
        *has_escapes = v.has_escapes;
    res->code = 0;
    return 0;
}

int cairn_guard_json_validate(const cairn_guard_opts_t *opts,
                              const void *text, size_t len,
                              cairn_guard_result_t *res)
{
    cairn_guard_opts_t def;
    if (!opts) {
        cairn_guard_opts_init(&def);
        opts = &def;
    }
    cairn__guard_result_reset(res);
    return cairn__json_validate(opts, text, len, res, NULL);
}
