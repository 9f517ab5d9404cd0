/* Strict JSON scanning shared by the native fast paths (scan.c, payload.c).
 *
 * Each function accepts only a conservative subset of JSON (no whitespace inside values, no escapes in
 * strings, integers of at most 18 digits, no "-0", no floats) and returns NULL on anything else, so the
 * caller sends that input down the exact DuckDB path instead of guessing. Every read is bounded by end.
 */
#ifndef VHLAKE_JSON_H
#define VHLAKE_JSON_H
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

/* Strict UTF-8 (RFC 3629): returns bytes consumed, 0 if invalid. Rejects DEL and U+2028/2029 when payload. */
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

/* Whether any of the 8 bytes of w may end a run of plain characters: a quote, a backslash, a control
 * byte (< 0x20) or a byte from 0x7f up (DEL, UTF-8). Never "no" for a word holding such a byte (the
 * has-zero, has-less and has-more bit tricks are each exact as a yes/no); a "yes" only makes the caller
 * step through the word one byte at a time, as it did for every byte before. */
static inline int maybe_special(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
    uint64_t has_quote = (quote - ones) & ~quote & high;
    uint64_t has_slash = (slash - ones) & ~slash & high;
    uint64_t has_control = (w - ones * 0x20) & ~w & high;
    uint64_t has_high = ((w + ones) | w) & high;
    return (has_quote | has_slash | has_control | has_high) != 0;
}

/* p at opening quote; returns pointer past closing quote or NULL. No escapes allowed. Plain runs are
 * skipped 8 bytes at a time (ids, paths and names are nearly all plain ASCII). */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *end, int payload) {
    p++;
    while (p < end) {
        if (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (!maybe_special(w)) {
                p += 8;
                continue;
            }
        }
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

#endif
