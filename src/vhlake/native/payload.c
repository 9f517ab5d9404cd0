/* Payload typing fast path (called through ctypes by pipeline/native_typing.py).
 *
 * For each bronze payload, the typed payload fields silver needs, with the semantics of silver.TYPE_SQL:
 * integers only for the integer fields ("12", 1.5 and [] are NULL), strings only for the string fields,
 * and for error_types an object of 32-bit integers (another value type: NULL).
 * A row is DECIDED (ok=1) only when its payload is in the simple, minified form whose result is certain:
 * NULL, or an object with no whitespace, no escapes, no duplicate or case-colliding keys, no floats and no
 * integers of more than 18 digits. Anything else: ok=0, and the caller types that row with the exact SQL.
 */
#include <strings.h> /* strncasecmp */

#include "json.h"

enum { P_RULESET, P_TOTAL, P_VALID, P_INVALID, P_ERRORS, P_TIME, P_SIZE, P_S3, NP };
enum { K_STR, K_INT, K_MAP };
static const char *PNAMES[NP] = {"ruleset", "total_rows", "valid_rows", "invalid_rows", "error_types",
                                 "processing_time_ms", "file_size_bytes", "s3_path"};
static const int PKIND[NP] = {K_STR, K_INT, K_INT, K_INT, K_MAP, K_INT, K_INT, K_STR};
/* Output slots: the string fields and the integer fields, in PNAMES order. */
static const int SLOT[NP] = {0, 0, 1, 2, -1, 3, 4, 1};
#define NSTR 2
#define NINT 5

const char *payload_field_name(int i) { return (i >= 0 && i < NP) ? PNAMES[i] : NULL; }

/* The field a key names; -1 for other keys, -2 for a key that differs from a field name only by case
 * (whether DuckDB's json_transform matches it is left to DuckDB). */
static int field_of(const uint8_t *k, int64_t len) {
    for (int i = 0; i < NP; i++) {
        if ((int64_t)strlen(PNAMES[i]) != len) continue;
        if (memcmp(k, PNAMES[i], len) == 0) return i;
        if (strncasecmp((const char *)k, PNAMES[i], len) == 0) return -2;
    }
    return -1;
}

/* An integer in the simple form: -?(0|[1-9][0-9]*), at most 18 digits, not "-0", not followed by a
 * fraction or exponent. Returns the end, or NULL. */
static const uint8_t *parse_int(const uint8_t *p, const uint8_t *end, int64_t *value) {
    const uint8_t *e = scan_number(p, end);
    if (!e) return NULL;
    int negative = *p == '-';
    int64_t v = 0;
    for (const uint8_t *d = p + negative; d < e; d++) v = v * 10 + (*d - '0');
    *value = negative ? -v : v;
    return e;
}

typedef struct {
    int64_t *key_start;
    int32_t *key_len;
    int32_t *values;
    int64_t used, capacity;
} Entries;

/* An error_types object of 32-bit integers; its entries are appended to out and counted in *count.
 * Returns the end, or NULL when the row must take the exact path (a value out of range among them). */
static const uint8_t *parse_map(const uint8_t *data, const uint8_t *p, const uint8_t *end, Entries *out,
                                int32_t *count, int *full) {
    int64_t first = out->used;
    p++;
    if (p < end && *p == '}') { *count = 0; return p + 1; }
    for (;;) {
        if (p >= end || *p != '"') return NULL;
        const uint8_t *k = scan_string(p, end, 0);
        if (!k || k >= end || *k != ':') return NULL;
        int32_t klen = (int32_t)(k - p - 2);
        for (int64_t j = first; j < out->used; j++) /* duplicate keys: left to DuckDB */
            if (out->key_len[j] == klen && memcmp(data + out->key_start[j], p + 1, klen) == 0) return NULL;
        int64_t v;
        const uint8_t *e = parse_int(k + 1, end, &v);
        if (!e || v < INT32_MIN || v > INT32_MAX) return NULL;
        if (out->used == out->capacity) { *full = 1; return NULL; }
        out->key_start[out->used] = (int64_t)(p + 1 - data);
        out->key_len[out->used] = klen;
        out->values[out->used] = (int32_t)v;
        out->used++;
        p = e;
        if (p >= end) return NULL;
        if (*p == ',') { p++; continue; }
        if (*p != '}') return NULL;
        *count = (int32_t)(out->used - first);
        return p + 1;
    }
}

/* One payload object. Returns 1 when decided, 0 when the row takes the exact path. */
static int type_one(const uint8_t *data, const uint8_t *p, const uint8_t *end, int64_t row, int64_t n,
                    int64_t *str_start, int32_t *str_len, int64_t *ints, uint8_t *int_valid, int32_t *map_count,
                    Entries *entries, int *full) {
    if (p >= end || *p != '{') return 0;
    p++;
    if (p < end && *p == '}') return p + 1 == end;
    unsigned seen = 0;
    for (;;) {
        if (p >= end || *p != '"') return 0;
        const uint8_t *k = scan_string(p, end, 0);
        if (!k || k >= end || *k != ':') return 0;
        int f = field_of(p + 1, k - p - 2);
        if (f == -2) return 0;
        p = k + 1;
        if (p >= end) return 0;
        const uint8_t *e;
        if (f < 0) {
            e = scan_value(p, end, 1);
        } else {
            if (seen & (1u << f)) return 0;
            seen |= 1u << f;
            if (PKIND[f] == K_STR && *p == '"') {
                e = scan_string(p, end, 0);
                if (e && e - p - 2 <= INT32_MAX) {
                    str_start[SLOT[f] * n + row] = (int64_t)(p + 1 - data);
                    str_len[SLOT[f] * n + row] = (int32_t)(e - p - 2);
                }
            } else if (PKIND[f] == K_INT && (*p == '-' || (*p >= '0' && *p <= '9'))) {
                int64_t v;
                e = parse_int(p, end, &v);
                if (e) { ints[SLOT[f] * n + row] = v; int_valid[SLOT[f] * n + row] = 1; }
            } else if (PKIND[f] == K_MAP && *p == '{') {
                e = parse_map(data, p, end, entries, &map_count[row], full);
            } else {
                e = scan_value(p, end, 1); /* another type: the field is NULL */
            }
        }
        if (!e || e >= end) return 0;
        p = e;
        if (*p == ',') { p++; continue; }
        return *p == '}' && p + 1 == end;
    }
}

/* Types rows [from, n). offsets: n+1 int64 (relative to data); valid: 1 per row (0: NULL payload).
 * Outputs (caller-sized, NULL-initialised by this function): ok[n]; str_start/str_len[NSTR*n] (len -1:
 * NULL); ints/int_valid[NINT*n]; map_count[n] (-1: NULL) with its entries appended to key_start/key_len/
 * values (capacity entries, *used in/out). Returns the first row not typed: n when done, less when the
 * entry buffers filled up (call again from there with fresh buffers). */
int64_t type_payloads(const uint8_t *data, const int64_t *offsets, const uint8_t *valid, int64_t from,
                      int64_t n, uint8_t *ok, int64_t *str_start, int32_t *str_len, int64_t *ints,
                      uint8_t *int_valid, int32_t *map_count, int64_t *key_start, int32_t *key_len,
                      int32_t *values, int64_t capacity, int64_t *used) {
    Entries entries = {key_start, key_len, values, *used, capacity};
    for (int64_t i = from; i < n; i++) {
        for (int s = 0; s < NSTR; s++) str_len[s * n + i] = -1;
        for (int s = 0; s < NINT; s++) int_valid[s * n + i] = 0;
        map_count[i] = -1;
        if (!valid[i]) { ok[i] = 1; continue; }
        int64_t mark = entries.used;
        int full = 0;
        ok[i] = (uint8_t)type_one(data, data + offsets[i], data + offsets[i + 1], i, n, str_start, str_len, ints,
                                  int_valid, map_count, &entries, &full);
        if (full) { entries.used = mark; *used = mark; return i; }
        if (!ok[i]) { entries.used = mark; map_count[i] = -1; }
    }
    *used = entries.used;
    return n;
}
