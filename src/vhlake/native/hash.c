/* The seed of the keyed hashes (hash.h). Until set_hash_seed is called it is a fixed value: correct,
 * but then crafted input could aim at the tables (payload.c still bounds its probes and falls back). */
#include <string.h>

#include "hash.h"

uint64_t hash_seed[2] = {0x0123456789abcdefULL, 0xfedcba9876543210ULL};

void set_hash_seed(uint64_t k0, uint64_t k1) {
    hash_seed[0] = k0;
    hash_seed[1] = k1;
}

static inline uint64_t rotl64(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                                                        \
    do {                                                                                                \
        v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);                                   \
        v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;                                                        \
        v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;                                                        \
        v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);                                   \
    } while (0)

uint64_t keyed_hash(const uint8_t *p, size_t len) {
    uint64_t k0 = hash_seed[0], k1 = hash_seed[1];
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t whole = len & ~(size_t)7;
    for (size_t at = 0; at < whole; at += 8) {
        uint64_t m;
        memcpy(&m, p + at, 8); /* host order: the hash only has to agree with itself */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++) last |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
