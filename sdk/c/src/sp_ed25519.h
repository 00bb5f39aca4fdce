/*
 * Ed25519 signing (RFC 8032, pure Ed25519) and the SHA-512 it needs. Streaming over the message
 * (the message is produced twice by a callback instead of being held in memory), no heap.
 *
 * The field and group arithmetic is TweetNaCl's (Bernstein, van Gastel, Janssen, Lange, Schwabe,
 * Smetsers; public domain), restructured for streaming; SHA-512 written for sensorpipe. This file is
 * MIT (the repository's licence) and also dedicated to the public domain (CC0 1.0).
 *
 * Compile with -DSP_WITH_ED25519=0 to leave it out (about 6 KiB of code less).
 */
#ifndef SP_ED25519_H
#define SP_ED25519_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint64_t state[8];
  uint64_t length; /* bytes hashed so far (2^64 bytes is more than enough here) */
  uint8_t block[128];
  size_t used;
} sp_sha512_ctx;

void sp_sha512_init(sp_sha512_ctx *ctx);
void sp_sha512_update(sp_sha512_ctx *ctx, const void *data, size_t len);
void sp_sha512_final(sp_sha512_ctx *ctx, uint8_t digest[64]);

/* Derives the 32-byte public key from the 32-byte private key (seed). */
void sp_ed25519_public_key(uint8_t public_key[32], const uint8_t seed[32]);

/*
 * Signs a message that `write_message` feeds to the hash it is given (it is called twice, and must
 * produce the same bytes both times). `public_key` may be NULL: it is then derived from the seed
 * (one more scalar multiplication).
 */
typedef void (*sp_ed25519_message_fn)(void *message_ctx, sp_sha512_ctx *hash);
void sp_ed25519_sign(uint8_t signature[64], const uint8_t seed[32], const uint8_t *public_key,
                     sp_ed25519_message_fn write_message, void *message_ctx);

#ifdef __cplusplus
}
#endif

#endif
