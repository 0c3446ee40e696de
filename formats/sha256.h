/* sha256.h — SHA-256 (FIPS 180-4), streaming.
 *
 * Used to check merged tensors and whole files against the sha256 values
 * recorded in the reference corpus (merge-info.json), and available to any
 * tool that wants to print or verify a digest. No allocation, no errors. */
#ifndef SMELT_SHA256_H
#define SMELT_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sm_sha256 {
    uint32_t h[8];      /* running hash state */
    uint64_t n_bytes;   /* total bytes fed so far */
    uint8_t buf[64];    /* [n_buf] pending bytes of the current block */
    uint32_t n_buf;
} sm_sha256;

void sm_sha256_init(sm_sha256 *s);
/* Feeds n bytes (data may be NULL when n == 0). */
void sm_sha256_update(sm_sha256 *s, const void *data, size_t n);
/* Writes the 32-byte digest; the state must be re-initialised to reuse it. */
void sm_sha256_final(sm_sha256 *s, uint8_t out[32]);
/* One-shot digest as 64 lower-case hex chars + NUL into hex[65]. */
void sm_sha256_hex(const void *data, size_t n, char hex[65]);
/* Formats a 32-byte digest as lower-case hex into hex[65]. */
void sm_sha256_to_hex(const uint8_t digest[32], char hex[65]);

#endif
