/* Conservative strict-JSON scanner for the bronze fast path (called through ctypes by ingest/fast_parse.py).
 *
 * A line is ACCEPTED (ok=1) only when it is, byte for byte, the simple form whose output we can produce by
 * slicing: a JSON object, no whitespace except around the whole object, keys among the 9 known names with
 * no escapes and no duplicates, string fields "..." (no escapes, valid UTF-8, no control chars) or null,
 * payload null / string (same rules) / an object already in yyjson's minified output form (integers of at
 * most 18 digits, no "-0", no floats, no escapes, no DEL, no U+2028/2029, no whitespace).
 * Anything else: ok=0 and the caller sends the line down the exact path. Never guesses.
 *
 * Memory safety: every read is bounded by the line's end pointer (offsets come from an Arrow array the
 * caller validated); every write goes to caller-sized buffers (n*NF slots). Tested differentially against
 * the DuckDB path on awkward and random lines (tests/test_fast_parse.py).
 */
#include "json.h"

#define NF 9
enum { F_EVENT_ID, F_EVENT_TYPE, F_JOB_ID, F_USER_ID, F_MARKETPLACE, F_CATEGORY, F_SOURCE_SYSTEM, F_TIMESTAMP, F_PAYLOAD };
static const char *NAMES[NF] = {"event_id", "event_type", "job_id", "user_id", "marketplace",
                                "category", "source_system", "timestamp", "payload"};

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int key_index(const uint8_t *k, int64_t len) {
    for (int i = 0; i < NF; i++)
        if ((int64_t)strlen(NAMES[i]) == len && memcmp(k, NAMES[i], len) == 0) return i;
    return -1;
}

/* starts/lens: n*NF (row-major). lens=-1: SQL NULL. kinds (payload): 0 null, 1 object, 2 string. */
static int scan_line(const uint8_t *data, const uint8_t *p, const uint8_t *end, int64_t *starts, int32_t *lens,
                     uint8_t *pkind) {
    for (int i = 0; i < NF; i++) { starts[i] = 0; lens[i] = -1; }
    *pkind = 0;
    while (p < end && is_ws(*p)) p++;
    while (end > p && is_ws(end[-1])) end--;
    if (p >= end || *p != '{') return 0;
    p++;
    if (p < end && *p == '}') return p + 1 == end;
    unsigned seen = 0;
    for (;;) {
        if (p >= end || *p != '"') return 0;
        const uint8_t *k = p + 1;
        const uint8_t *q = memchr(k, '"', end - k);
        if (!q) return 0;
        int f = key_index(k, q - k);
        if (f < 0 || (seen & (1u << f))) return 0;
        seen |= 1u << f;
        p = q + 1;
        if (p >= end || *p != ':') return 0;
        p++;
        if (p >= end) return 0;
        if (*p == 'n') {
            if (end - p < 4 || memcmp(p, "null", 4) != 0) return 0;
            p += 4;
        } else if (*p == '"') {
            const uint8_t *e = scan_string(p, end, f == F_PAYLOAD);
            if (!e || e - p > INT32_MAX) return 0;
            starts[f] = (int64_t)(p + 1 - data);
            lens[f] = (int32_t)(e - p - 2);
            if (f == F_PAYLOAD) *pkind = 2;
            p = e;
        } else if (*p == '{' && f == F_PAYLOAD) {
            const uint8_t *e = scan_value(p, end, 1);
            if (!e || e - p > INT32_MAX) return 0;
            starts[f] = (int64_t)(p - data);
            lens[f] = (int32_t)(e - p);
            *pkind = 1;
            p = e;
        } else return 0;
        if (p >= end) return 0;
        if (*p == ',') { p++; continue; }
        if (*p == '}') return p + 1 == end;
        return 0;
    }
}

/* Accepted lines are written compactly, column-major: starts[f*n + j], lens[f*n + j] for the j-th accepted
 * line, whose index is rows[j]. Returns the number of accepted lines. starts are relative to data. */
int64_t scan_lines(const uint8_t *data, const int64_t *offsets, int64_t n, int64_t *starts, int32_t *lens,
                   int64_t *rows) {
    int64_t j = 0;
    int64_t s[NF];
    int32_t l[NF];
    uint8_t kind;
    for (int64_t i = 0; i < n; i++) {
        if (!scan_line(data, data + offsets[i], data + offsets[i + 1], s, l, &kind)) continue;
        for (int f = 0; f < NF; f++) { starts[f * n + j] = s[f]; lens[f * n + j] = l[f]; }
        rows[j++] = i;
    }
    return j;
}

/* Gather one column: out_offsets[n+1] must be precomputed (cumsum of max(len,0)). */
void gather(const uint8_t *data, const int64_t *starts, const int32_t *lens, int64_t stride, int64_t n,
            const int64_t *out_offsets, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        int32_t l = lens[i * stride];
        if (l > 0) memcpy(out + out_offsets[i], data + starts[i * stride], (size_t)l);
    }
}

