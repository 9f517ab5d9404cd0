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

#include <stdlib.h>

#include "hash.h"
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

/* The duplicate-key check of one error_types object: an open-addressing set of the object's entries
 * (indices relative to its first), keyed-hashed (hash.h) and sized to the object, so each key costs O(1)
 * expected and a whole object O(keys). Small objects compare keys directly (no hashing, no memory). */
typedef struct {
    int64_t *slots; /* entry index, -1: empty */
    int64_t allocated, capacity;
} KeySet;

#define DIRECT_KEYS 8
/* A probe chain longer than this means keys aimed at the hash (or a freak): the row takes the exact
 * path, so even then a key costs at most MAX_PROBE comparisons. */
#define MAX_PROBE 64

typedef struct {
    int64_t *key_start;
    int32_t *key_len;
    int32_t *values;
    int64_t used, capacity;
    KeySet set;
} Entries;

static inline int same_key(const uint8_t *data, const Entries *e, int64_t j, const uint8_t *k, int32_t klen) {
    return e->key_len[j] == klen && memcmp(data + e->key_start[j], k, (size_t)klen) == 0;
}

/* Puts entry j (of the object starting at entry first) in the set. Returns 1, 0 when its key is already
 * there, -1 when the row must take the exact path (a probe chain too long). */
static int set_insert(const uint8_t *data, Entries *e, int64_t first, int64_t j) {
    KeySet *set = &e->set;
    int64_t mask = set->capacity - 1;
    const uint8_t *k = data + e->key_start[j];
    int32_t klen = e->key_len[j];
    int64_t at = (int64_t)(keyed_hash(k, (size_t)klen) & (uint64_t)mask);
    for (int probe = 0; probe < MAX_PROBE; probe++, at = (at + 1) & mask) {
        int64_t held = set->slots[at];
        if (held < 0) { set->slots[at] = j - first; return 1; }
        if (same_key(data, e, first + held, k, klen)) return 0;
    }
    return -1;
}

/* A set of capacity slots (a power of two) holding entries first .. first+count-1. Returns 1, 0 on a
 * duplicate key, -1 for the exact path (no memory, or a probe chain too long). */
static int set_build(const uint8_t *data, Entries *e, int64_t first, int64_t count, int64_t capacity) {
    KeySet *set = &e->set;
    if (capacity > set->allocated) {
        int64_t *grown = realloc(set->slots, (size_t)capacity * sizeof(int64_t));
        if (!grown) return -1; /* no memory: the exact path */
        set->slots = grown;
        set->allocated = capacity;
    }
    set->capacity = capacity;
    memset(set->slots, 0xff, (size_t)capacity * sizeof(int64_t)); /* this object's size, not the largest */
    for (int64_t j = first; j < first + count; j++) {
        int r = set_insert(data, e, first, j);
        if (r <= 0) return r;
    }
    return 1;
}

/* Whether the object's newest entry (first + count - 1) has a new key: 1 yes, 0 a duplicate, -1 the
 * exact path. */
static int key_is_new(const uint8_t *data, Entries *e, int64_t first, int64_t count) {
    int64_t last = first + count - 1;
    if (count <= DIRECT_KEYS) {
        for (int64_t j = first; j < last; j++)
            if (same_key(data, e, j, data + e->key_start[last], e->key_len[last])) return 0;
        return 1;
    }
    if (count == DIRECT_KEYS + 1 || 2 * count > e->set.capacity) /* at most half full: short chains */
        return set_build(data, e, first, count, count == DIRECT_KEYS + 1 ? 64 : 2 * e->set.capacity);
    return set_insert(data, e, first, last);
}

/* An error_types object of 32-bit integers; its entries are appended to out and counted in *count.
 * Returns the end, or NULL when the row must take the exact path (a value out of range among them, a
 * duplicate key: left to DuckDB). */
static const uint8_t *parse_map(const uint8_t *data, const uint8_t *p, const uint8_t *end, Entries *out,
                                int32_t *count, int *full) {
    int64_t first = out->used;
    p++;
    if (p < end && *p == '}') { *count = 0; return p + 1; }
    for (;;) {
        if (p >= end || *p != '"') return NULL;
        const uint8_t *k = scan_string(p, end, 0);
        if (!k || k >= end || *k != ':' || k - p - 2 > INT32_MAX) return NULL;
        int64_t v;
        const uint8_t *e = parse_int(k + 1, end, &v);
        if (!e || v < INT32_MIN || v > INT32_MAX) return NULL;
        if (out->used == out->capacity) { *full = 1; return NULL; }
        if (out->used - first == INT32_MAX) return NULL; /* more entries than a count holds */
        out->key_start[out->used] = (int64_t)(p + 1 - data);
        out->key_len[out->used] = (int32_t)(k - p - 2);
        out->values[out->used] = (int32_t)v;
        out->used++;
        if (key_is_new(data, out, first, out->used - first) <= 0) return NULL;
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
                if (e && e - p - 2 > INT32_MAX) return 0; /* longer than a slice length holds: exact path */
                if (e) {
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
    Entries entries = {key_start, key_len, values, *used, capacity, {NULL, 0, 0}};
    for (int64_t i = from; i < n; i++) {
        for (int s = 0; s < NSTR; s++) str_len[s * n + i] = -1;
        for (int s = 0; s < NINT; s++) int_valid[s * n + i] = 0;
        map_count[i] = -1;
        if (!valid[i]) { ok[i] = 1; continue; }
        int64_t mark = entries.used;
        int full = 0;
        ok[i] = (uint8_t)type_one(data, data + offsets[i], data + offsets[i + 1], i, n, str_start, str_len, ints,
                                  int_valid, map_count, &entries, &full);
        if (full) { entries.used = mark; *used = mark; free(entries.set.slots); return i; }
        if (!ok[i]) { entries.used = mark; map_count[i] = -1; }
    }
    *used = entries.used;
    free(entries.set.slots);
    return n;
}
