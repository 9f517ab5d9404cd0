/* Conservative strict-JSON scanner for the bronze fast path (loaded with ctypes by ingest/fast_parse.py).
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
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NF 9
enum { F_EVENT_ID, F_EVENT_TYPE, F_JOB_ID, F_USER_ID, F_MARKETPLACE, F_CATEGORY, F_SOURCE_SYSTEM, F_TIMESTAMP, F_PAYLOAD };
static const char *NAMES[NF] = {"event_id", "event_type", "job_id", "user_id", "marketplace",
                                "category", "source_system", "timestamp", "payload"};

#define MAX_DEPTH 64

/* Strict UTF-8 (RFC 3629): returns bytes consumed, 0 if invalid. Rejects DEL and U+2028/2029 when strict_out. */
static inline int utf8_char(const uint8_t *p, const uint8_t *end, int payload) {
    uint8_t c = p[0];
    if (c < 0x80) return (c >= 0x20 && c != '"' && c != '\\' && !(payload && c == 0x7f)) ? 1 : 0;
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogates */
        if (payload && c == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;
        if (c == 0xF4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

/* p at opening quote; returns pointer past closing quote or NULL. No escapes allowed. */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *end, int payload) {
    p++;
    while (p < end) {
        uint8_t c = *p;
        if (c == '"') return p + 1;
        if (c >= 0x20 && c < 0x7f && c != '\\') { p++; continue; }
        int k = utf8_char(p, end, payload);
        if (!k) return NULL;
        p += k;
    }
    return NULL;
}

static const uint8_t *scan_value(const uint8_t *p, const uint8_t *end, int depth);

static const uint8_t *scan_number(const uint8_t *p, const uint8_t *end) {
    const uint8_t *s = p;
    if (p < end && *p == '-') p++;
    const uint8_t *d = p;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
        if (s != d) return NULL; /* "-0": leave to the exact path */
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else return NULL;
    if (p - d > 18) return NULL;
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return NULL; /* floats: exact path */
    return p;
}

static const uint8_t *scan_value(const uint8_t *p, const uint8_t *end, int depth) {
    if (p >= end) return NULL;
    switch (*p) {
    case '"': return scan_string(p, end, 1);
    case '{':
        if (depth >= MAX_DEPTH) return NULL;
        p++;
        if (p < end && *p == '}') return p + 1;
        for (;;) {
            if (p >= end || *p != '"') return NULL;
            p = scan_string(p, end, 1);
            if (!p || p >= end || *p != ':') return NULL;
            p = scan_value(p + 1, end, depth + 1);
            if (!p || p >= end) return NULL;
            if (*p == ',') { p++; continue; }
            if (*p == '}') return p + 1;
            return NULL;
        }
    case '[':
        if (depth >= MAX_DEPTH) return NULL;
        p++;
        if (p < end && *p == ']') return p + 1;
        for (;;) {
            p = scan_value(p, end, depth + 1);
            if (!p || p >= end) return NULL;
            if (*p == ',') { p++; continue; }
            if (*p == ']') return p + 1;
            return NULL;
        }
    case 't': return (end - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;
    case 'f': return (end - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;
    case 'n': return (end - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;
    default: return scan_number(p, end);
    }
}

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

/* Built by setuptools as an extension module so that it ships in the wheel; it has no Python API. */
static struct PyModuleDef scan_module = {PyModuleDef_HEAD_INIT, "_scan", "ctypes-only scanner", -1, NULL};
PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&scan_module); }
