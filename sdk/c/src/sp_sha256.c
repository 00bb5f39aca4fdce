/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104). Written for sensorpipe; MIT, and dedicated to the
 * public domain (CC0 1.0). Portable C99, no heap, no table larger than the 256-byte round constants.
 */
#include "sp_sha256.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98UL, 0x71374491UL, 0xb5c0fbcfUL, 0xe9b5dba5UL, 0x3956c25bUL, 0x59f111f1UL, 0x923f82a4UL, 0xab1c5ed5UL,
    0xd807aa98UL, 0x12835b01UL, 0x243185beUL, 0x550c7dc3UL, 0x72be5d74UL, 0x80deb1feUL, 0x9bdc06a7UL, 0xc19bf174UL,
    0xe49b69c1UL, 0xefbe4786UL, 0x0fc19dc6UL, 0x240ca1ccUL, 0x2de92c6fUL, 0x4a7484aaUL, 0x5cb0a9dcUL, 0x76f988daUL,
    0x983e5152UL, 0xa831c66dUL, 0xb00327c8UL, 0xbf597fc7UL, 0xc6e00bf3UL, 0xd5a79147UL, 0x06ca6351UL, 0x14292967UL,
    0x27b70a85UL, 0x2e1b2138UL, 0x4d2c6dfcUL, 0x53380d13UL, 0x650a7354UL, 0x766a0abbUL, 0x81c2c92eUL, 0x92722c85UL,
    0xa2bfe8a1UL, 0xa81a664bUL, 0xc24b8b70UL, 0xc76c51a3UL, 0xd192e819UL, 0xd6990624UL, 0xf40e3585UL, 0x106aa070UL,
    0x19a4c116UL, 0x1e376c08UL, 0x2748774cUL, 0x34b0bcb5UL, 0x391c0cb3UL, 0x4ed8aa4aUL, 0x5b9cca4fUL, 0x682e6ff3UL,
    0x748f82eeUL, 0x78a5636fUL, 0x84c87814UL, 0x8cc70208UL, 0x90befffaUL, 0xa4506cebUL, 0xbef9a3f7UL, 0xc67178f2UL,
};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

static void compress(uint32_t state[8], const uint8_t block[64]) {
  uint32_t w[64];
  uint32_t a, b, c, d, e, f, g, h;
  unsigned i;
  for (i = 0; i < 16; i++) {
    w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) | ((uint32_t)block[4 * i + 2] << 8) |
           (uint32_t)block[4 * i + 3];
  }
  for (i = 16; i < 64; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = state[0]; b = state[1]; c = state[2]; d = state[3];
  e = state[4]; f = state[5]; g = state[6]; h = state[7];
  for (i = 0; i < 64; i++) {
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1;
    d = c; c = b; b = a; a = t1 + t2;
  }
  state[0] += a; state[1] += b; state[2] += c; state[3] += d;
  state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

void sp_sha256_init(sp_sha256_ctx *ctx) {
  static const uint32_t H0[8] = {
    0x6a09e667UL, 0xbb67ae85UL, 0x3c6ef372UL, 0xa54ff53aUL,
    0x510e527fUL, 0x9b05688cUL, 0x1f83d9abUL, 0x5be0cd19UL,
  };
  memcpy(ctx->state, H0, sizeof H0);
  ctx->length = 0;
  ctx->used = 0;
}

void sp_sha256_update(sp_sha256_ctx *ctx, const void *data, size_t len) {
  const uint8_t *p = (const uint8_t *)data;
  ctx->length += len;
  while (len > 0) {
    size_t take = SP_SHA256_BLOCK_SIZE - ctx->used;
    if (take > len) take = len;
    memcpy(ctx->block + ctx->used, p, take);
    ctx->used += take;
    p += take;
    len -= take;
    if (ctx->used == SP_SHA256_BLOCK_SIZE) {
      compress(ctx->state, ctx->block);
      ctx->used = 0;
    }
  }
}

void sp_sha256_final(sp_sha256_ctx *ctx, uint8_t digest[SP_SHA256_DIGEST_SIZE]) {
  uint64_t bits = ctx->length * 8u;
  unsigned i;
  ctx->block[ctx->used++] = 0x80;
  if (ctx->used > 56) {
    memset(ctx->block + ctx->used, 0, SP_SHA256_BLOCK_SIZE - ctx->used);
    compress(ctx->state, ctx->block);
    ctx->used = 0;
  }
  memset(ctx->block + ctx->used, 0, 56 - ctx->used);
  for (i = 0; i < 8; i++) ctx->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
  compress(ctx->state, ctx->block);
  for (i = 0; i < 8; i++) {
    digest[4 * i] = (uint8_t)(ctx->state[i] >> 24);
    digest[4 * i + 1] = (uint8_t)(ctx->state[i] >> 16);
    digest[4 * i + 2] = (uint8_t)(ctx->state[i] >> 8);
    digest[4 * i + 3] = (uint8_t)ctx->state[i];
  }
  memset(ctx, 0, sizeof *ctx);
}

void sp_sha256(const void *data, size_t len, uint8_t digest[SP_SHA256_DIGEST_SIZE]) {
  sp_sha256_ctx ctx;
  sp_sha256_init(&ctx);
  sp_sha256_update(&ctx, data, len);
  sp_sha256_final(&ctx, digest);
}

void sp_hmac_sha256_init(sp_hmac_sha256_ctx *ctx, const uint8_t *key, size_t key_len) {
  uint8_t pad[SP_SHA256_BLOCK_SIZE];
  unsigned i;
  memset(pad, 0, sizeof pad);
  if (key_len > SP_SHA256_BLOCK_SIZE) {
    sp_sha256(key, key_len, pad); /* RFC 2104: a key longer than a block is hashed first */
  } else if (key_len > 0) {
    memcpy(pad, key, key_len);
  }
  for (i = 0; i < SP_SHA256_BLOCK_SIZE; i++) ctx->outer_key_pad[i] = (uint8_t)(pad[i] ^ 0x5c);
  for (i = 0; i < SP_SHA256_BLOCK_SIZE; i++) pad[i] ^= 0x36;
  sp_sha256_init(&ctx->inner);
  sp_sha256_update(&ctx->inner, pad, sizeof pad);
  memset(pad, 0, sizeof pad);
}

void sp_hmac_sha256_update(sp_hmac_sha256_ctx *ctx, const void *data, size_t len) {
  sp_sha256_update(&ctx->inner, data, len);
}

void sp_hmac_sha256_final(sp_hmac_sha256_ctx *ctx, uint8_t tag[SP_SHA256_DIGEST_SIZE]) {
  uint8_t inner_digest[SP_SHA256_DIGEST_SIZE];
  sp_sha256_ctx outer;
  sp_sha256_final(&ctx->inner, inner_digest);
  sp_sha256_init(&outer);
  sp_sha256_update(&outer, ctx->outer_key_pad, SP_SHA256_BLOCK_SIZE);
  sp_sha256_update(&outer, inner_digest, sizeof inner_digest);
  sp_sha256_final(&outer, tag);
  memset(inner_digest, 0, sizeof inner_digest);
  memset(ctx, 0, sizeof *ctx);
}
