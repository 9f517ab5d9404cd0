/* Lookup keys (called through ctypes by native_typing.lookup_keys): 60 bits of the md5 of a string,
 * the same integer as the SQL CAST(('0x' || left(md5(s), 15)) AS BIGINT) of silver.TYPE_SQL.
 * MD5 as in RFC 1321; tested against hashlib and DuckDB. */
#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t K[64];
static const uint8_t S[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

/* RFC 1321's table: K[i] = floor(|sin(i + 1)| * 2^32), exact in double precision. */
__attribute__((constructor)) static void md5_table(void) {
    for (int i = 0; i < 64; i++) K[i] = (uint32_t)floor(fabs(sin((double)(i + 1))) * 4294967296.0);
}

static inline uint32_t rotl(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

static void md5_block(uint32_t h[4], const uint8_t *block) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)block[4 * i] | (uint32_t)block[4 * i + 1] << 8 | (uint32_t)block[4 * i + 2] << 16 |
               (uint32_t)block[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) { f = (b & c) | (~b & d); g = i; }
        else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) & 15; }
        else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) & 15; }
        else { f = c ^ (b | ~d); g = (7 * i) & 15; }
        f += a + K[i] + m[g];
        a = d;
        d = c;
        c = b;
        b += rotl(f, S[i]);
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
}

static int64_t md5_key(const uint8_t *s, int64_t len) {
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    int64_t whole = len & ~(int64_t)63;
    for (int64_t at = 0; at < whole; at += 64) md5_block(h, s + at);
    uint8_t tail[128] = {0};
    int64_t rest = len - whole;
    memcpy(tail, s + whole, (size_t)rest);
    tail[rest] = 0x80;
    int blocks = rest < 56 ? 1 : 2;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[blocks * 64 - 8 + i] = (uint8_t)(bits >> (8 * i));
    for (int b = 0; b < blocks; b++) md5_block(h, tail + 64 * b);
    uint8_t digest[8];
    for (int i = 0; i < 8; i++) digest[i] = (uint8_t)(h[i / 4] >> (8 * (i % 4)));
    uint64_t key = 0;
    for (int i = 0; i < 7; i++) key = key << 8 | digest[i];
    return (int64_t)(key << 4 | digest[7] >> 4);
}

/* out[i] = the key of string i (offsets: n+1 int64, relative to data). */
void md5_keys(const uint8_t *data, const int64_t *offsets, int64_t n, int64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = md5_key(data + offsets[i], offsets[i + 1] - offsets[i]);
}
