/* Keyed hashing for the native hash tables (payload.c, fold.c).
 *
 * Table slots come from bytes or keys the sender chooses (error_types keys, ids whose md5 the sender can
 * grind), so a fixed hash would let crafted input pile every entry into one probe chain and make a table
 * quadratic. Both hashes are keyed by a per-process random seed (set_hash_seed, called once when the
 * library is loaded), which a sender cannot see. Results never depend on the seed, only speed does.
 */
#ifndef VHLAKE_HASH_H
#define VHLAKE_HASH_H
#include <stddef.h>
#include <stdint.h>

extern uint64_t hash_seed[2];

/* SipHash-1-3 of len bytes under the seed. */
uint64_t keyed_hash(const uint8_t *p, size_t len);

/* A 64-bit key (already uniform for honest ids) mixed with the seed: cheap, and its low bits are no
 * longer the key's own. */
static inline uint64_t keyed_mix(int64_t key) {
    uint64_t x = (uint64_t)key ^ hash_seed[0];
    x *= hash_seed[1] | 1;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

#endif
