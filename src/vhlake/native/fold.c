/* The fold of typed job events (called through ctypes by pipeline/native_fold.py), with silver.FOLD_SQL's
 * semantics: of the copies of an event_id, the first received (ingestion time, source, source offset)
 * wins; per job, its earliest validation_started, its latest other event and its earliest event, all
 * ordered by (timestamp, event_id). Rows are matched on their 60-bit keys and then on the id bytes, so a
 * key collision never merges two ids; a row's slot comes from its key mixed with the process's secret
 * seed (hash.h), so ids ground to share their keys' low bits cannot pile into one probe chain.
 * Returns the winning row indices; the caller gathers the columns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

typedef struct {
    const uint8_t *data;
    const int64_t *offsets;
} Strings;

static inline int same(Strings s, int64_t a, int64_t b) {
    int64_t la = s.offsets[a + 1] - s.offsets[a], lb = s.offsets[b + 1] - s.offsets[b];
    return la == lb && memcmp(s.data + s.offsets[a], s.data + s.offsets[b], (size_t)la) == 0;
}

/* Byte-wise order, as DuckDB and Spark compare strings. */
static inline int compare(Strings s, int64_t a, int64_t b) {
    int64_t la = s.offsets[a + 1] - s.offsets[a], lb = s.offsets[b + 1] - s.offsets[b];
    int c = memcmp(s.data + s.offsets[a], s.data + s.offsets[b], (size_t)(la < lb ? la : lb));
    return c ? c : (la > lb) - (la < lb);
}

static inline int64_t capacity_for(int64_t n) {
    int64_t c = 16;
    while (c < 2 * n) c <<= 1;
    return c;
}

/* The slot of the row equal to ``row`` (same key, same bytes), or of the empty slot where it goes. */
static inline int64_t probe(const int64_t *slots, int64_t mask, const int64_t *keys, Strings ids, int64_t row) {
    int64_t at = (int64_t)(keyed_mix(keys[row]) & (uint64_t)mask);
    while (slots[at] >= 0 && !(keys[slots[at]] == keys[row] && same(ids, slots[at], row))) at = (at + 1) & mask;
    return at;
}

static inline int received_before(const int64_t *time, const int32_t *source, const int64_t *offset,
                                  int64_t a, int64_t b) {
    if (time[a] != time[b]) return time[a] < time[b];
    if (source[a] != source[b]) return source[a] < source[b];
    return offset[a] < offset[b];
}

static inline int earlier(const int64_t *ts, Strings event_ids, int64_t a, int64_t b) {
    if (ts[a] != ts[b]) return ts[a] < ts[b];
    return compare(event_ids, a, b) < 0;
}

/* keep[n]: 1 for the first received copy of each event_id; foreign[n]: 1 for a dropped copy whose first
 * copy was sent for another job. source: the rank of each row's source in byte order. Returns 0, or -1
 * when out of memory. */
int dedupe_events(const int64_t *event_key, const uint8_t *id_data, const int64_t *id_offsets,
                  const int64_t *ingestion_time, const int32_t *source, const int64_t *source_offset,
                  const int64_t *job_key, const uint8_t *job_data, const int64_t *job_offsets, int64_t n,
                  uint8_t *keep, uint8_t *foreign) {
    Strings ids = {id_data, id_offsets}, jobs = {job_data, job_offsets};
    int64_t cap = capacity_for(n), mask = cap - 1;
    int64_t *slots = malloc((size_t)cap * sizeof(int64_t));
    if (!slots) return -1;
    memset(slots, 0xff, (size_t)cap * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        int64_t at = probe(slots, mask, event_key, ids, i);
        int64_t held = slots[at];
        if (held < 0) { slots[at] = i; keep[i] = 1; continue; }
        if (received_before(ingestion_time, source, source_offset, i, held)) {
            keep[held] = 0; keep[i] = 1; slots[at] = i;
        } else keep[i] = 0;
    }
    for (int64_t i = 0; i < n; i++) {
        foreign[i] = 0;
        if (keep[i]) continue;
        int64_t first = slots[probe(slots, mask, event_key, ids, i)];
        foreign[i] = !(job_key[first] == job_key[i] && same(jobs, first, i));
    }
    free(slots);
    return 0;
}

/* Over the kept rows: kind[i] 1 validation_started, 0 another event type. For each job j (in order of its
 * first kept row): first_row[j], started[j] (-1: none), terminal[j] (-1: none), earliest[j]; for every
 * row, job_of[i], its job's number (-1: a dropped copy in a job that has no kept row).
 * Returns the number of jobs, or -1 when out of memory. */
int64_t fold_jobs(const int64_t *job_key, const uint8_t *job_data, const int64_t *job_offsets,
                  const uint8_t *event_data, const int64_t *event_offsets, const int64_t *ts, const uint8_t *kind,
                  const uint8_t *keep, int64_t n, int64_t *first_row, int64_t *started, int64_t *terminal,
                  int64_t *earliest, int64_t *job_of) {
    Strings jobs = {job_data, job_offsets}, events = {event_data, event_offsets};
    int64_t cap = capacity_for(n), mask = cap - 1, m = 0;
    int64_t *slots = malloc((size_t)cap * sizeof(int64_t)); /* a job's first row */
    int64_t *index = malloc((size_t)cap * sizeof(int64_t)); /* its job number */
    if (!slots || !index) { free(slots); free(index); return -1; }
    memset(slots, 0xff, (size_t)cap * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        int64_t at = probe(slots, mask, job_key, jobs, i);
        if (slots[at] < 0) {
            slots[at] = i;
            index[at] = m;
            first_row[m] = i; started[m] = -1; terminal[m] = -1; earliest[m] = i;
            m++;
        }
        int64_t j = index[at];
        job_of[i] = j;
        if (earlier(ts, events, i, earliest[j])) earliest[j] = i;
        if (kind[i]) {
            if (started[j] < 0 || earlier(ts, events, i, started[j])) started[j] = i;
        } else if (terminal[j] < 0 || earlier(ts, events, terminal[j], i)) terminal[j] = i;
    }
    for (int64_t i = 0; i < n; i++) {
        if (keep[i]) continue;
        int64_t at = probe(slots, mask, job_key, jobs, i);
        job_of[i] = slots[at] < 0 ? -1 : index[at];
    }
    free(slots);
    free(index);
    return m;
}

/* flags[i] = 1 when key[i] also occurs with another group (a first build's buckets: an event_id sent for
 * jobs in two buckets). Keys only, no bytes: a collision only makes the caller look closer. Returns 0, or
 * -1 when out of memory. */
int keys_in_several_groups(const int64_t *key, const int32_t *group, int64_t n, uint8_t *flags) {
    int64_t cap = capacity_for(n), mask = cap - 1;
    int64_t *slots = malloc((size_t)cap * sizeof(int64_t));
    uint8_t *several = calloc((size_t)cap, 1);
    if (!slots || !several) { free(slots); free(several); return -1; }
    memset(slots, 0xff, (size_t)cap * sizeof(int64_t));
    for (int64_t pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++) {
            int64_t at = (int64_t)(keyed_mix(key[i]) & (uint64_t)mask);
            while (slots[at] >= 0 && key[slots[at]] != key[i]) at = (at + 1) & mask;
            if (pass == 1) { flags[i] = several[at]; continue; }
            if (slots[at] < 0) slots[at] = i;
            else if (group[slots[at]] != group[i]) several[at] = 1;
        }
    }
    free(slots);
    free(several);
    return 0;
}
