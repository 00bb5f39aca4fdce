/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), streaming, no heap.
 *
 * Written for sensorpipe; released under the repository's MIT licence, and additionally dedicated
 * to the public domain (CC0 1.0): copy it into anything. See sdk/c/README.md, "Licence".
 */
#ifndef SP_SHA256_H
#define SP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_SHA256_DIGEST_SIZE 32
#define SP_SHA256_BLOCK_SIZE 64

typedef struct {
  uint32_t state[8];
  uint64_t length; /* bytes hashed so far */
  uint8_t block[SP_SHA256_BLOCK_SIZE];
  size_t used; /* bytes in block */
} sp_sha256_ctx;

void sp_sha256_init(sp_sha256_ctx *ctx);
void sp_sha256_update(sp_sha256_ctx *ctx, const void *data, size_t len);
void sp_sha256_final(sp_sha256_ctx *ctx, uint8_t digest[SP_SHA256_DIGEST_SIZE]);
void sp_sha256(const void *data, size_t len, uint8_t digest[SP_SHA256_DIGEST_SIZE]);

typedef struct {
  sp_sha256_ctx inner;
  uint8_t outer_key_pad[SP_SHA256_BLOCK_SIZE];
} sp_hmac_sha256_ctx;

void sp_hmac_sha256_init(sp_hmac_sha256_ctx *ctx, const uint8_t *key, size_t key_len);
void sp_hmac_sha256_update(sp_hmac_sha256_ctx *ctx, const void *data, size_t len);
/* Writes the 32-byte tag and wipes the context (it holds key material). */
void sp_hmac_sha256_final(sp_hmac_sha256_ctx *ctx, uint8_t tag[SP_SHA256_DIGEST_SIZE]);

#ifdef __cplusplus
}
#endif

#endif
