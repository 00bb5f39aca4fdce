/*
 * Ed25519 signing (RFC 8032) and SHA-512 (FIPS 180-4), no heap. Field and group arithmetic from
 * TweetNaCl (public domain); see sp_ed25519.h. Stack use while signing is about 3 KiB.
 */
#include "sp_ed25519.h"

#ifndef SP_WITH_ED25519
#define SP_WITH_ED25519 1
#endif

#if SP_WITH_ED25519

#include <string.h>

/* ---- SHA-512 ---------------------------------------------------------------------------------- */

static const uint64_t K512[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

static uint64_t rotr64(uint64_t x, unsigned n) { return (x >> n) | (x << (64u - n)); }

static void sha512_compress(uint64_t state[8], const uint8_t block[128]) {
  uint64_t w[80];
  uint64_t a, b, c, d, e, f, g, h;
  unsigned i, j;
  for (i = 0; i < 16; i++) {
    uint64_t v = 0;
    for (j = 0; j < 8; j++) v = (v << 8) | block[8 * i + j];
    w[i] = v;
  }
  for (i = 16; i < 80; i++) {
    uint64_t s0 = rotr64(w[i - 15], 1) ^ rotr64(w[i - 15], 8) ^ (w[i - 15] >> 7);
    uint64_t s1 = rotr64(w[i - 2], 19) ^ rotr64(w[i - 2], 61) ^ (w[i - 2] >> 6);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = state[0]; b = state[1]; c = state[2]; d = state[3];
  e = state[4]; f = state[5]; g = state[6]; h = state[7];
  for (i = 0; i < 80; i++) {
    uint64_t t1 = h + (rotr64(e, 14) ^ rotr64(e, 18) ^ rotr64(e, 41)) + ((e & f) ^ (~e & g)) + K512[i] + w[i];
    uint64_t t2 = (rotr64(a, 28) ^ rotr64(a, 34) ^ rotr64(a, 39)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1;
    d = c; c = b; b = a; a = t1 + t2;
  }
  state[0] += a; state[1] += b; state[2] += c; state[3] += d;
  state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

void sp_sha512_init(sp_sha512_ctx *ctx) {
  static const uint64_t H0[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
  };
  memcpy(ctx->state, H0, sizeof H0);
  ctx->length = 0;
  ctx->used = 0;
}

void sp_sha512_update(sp_sha512_ctx *ctx, const void *data, size_t len) {
  const uint8_t *p = (const uint8_t *)data;
  ctx->length += len;
  while (len > 0) {
    size_t take = sizeof ctx->block - ctx->used;
    if (take > len) take = len;
    memcpy(ctx->block + ctx->used, p, take);
    ctx->used += take;
    p += take;
    len -= take;
    if (ctx->used == sizeof ctx->block) {
      sha512_compress(ctx->state, ctx->block);
      ctx->used = 0;
    }
  }
}

void sp_sha512_final(sp_sha512_ctx *ctx, uint8_t digest[64]) {
  uint64_t bits = ctx->length * 8u;
  unsigned i, j;
  ctx->block[ctx->used++] = 0x80;
  if (ctx->used > 112) {
    memset(ctx->block + ctx->used, 0, sizeof ctx->block - ctx->used);
    sha512_compress(ctx->state, ctx->block);
    ctx->used = 0;
  }
  /* The length field is 128 bits; the upper 64 are zero for any message this library hashes. */
  memset(ctx->block + ctx->used, 0, 120 - ctx->used);
  for (i = 0; i < 8; i++) ctx->block[120 + i] = (uint8_t)(bits >> (56 - 8 * i));
  sha512_compress(ctx->state, ctx->block);
  for (i = 0; i < 8; i++) {
    for (j = 0; j < 8; j++) digest[8 * i + j] = (uint8_t)(ctx->state[i] >> (56 - 8 * j));
  }
  memset(ctx, 0, sizeof *ctx);
}

/* ---- GF(2^255 - 19), 16 limbs of 16 bits in int64 (TweetNaCl) ---------------------------------- */

typedef int64_t gf[16];

static const gf gf0 = {0};
static const gf gf1 = {1};
static const gf D2 = {0xf159, 0x26b2, 0x9b94, 0xebd6, 0xb156, 0x8283, 0x149a, 0x00e0,
                      0xd130, 0xeef3, 0x80f2, 0x198e, 0xfce7, 0x56df, 0xd9dc, 0x2406};
static const gf X = {0xd51a, 0x8f25, 0x2d60, 0xc956, 0xa7b2, 0x9525, 0xc760, 0x692c,
                     0xdc5c, 0xfdd6, 0xe231, 0xc0a4, 0x53fe, 0xcd6e, 0x36d3, 0x2169};
static const gf Y = {0x6658, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666,
                     0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666};

static void set25519(gf r, const gf a) {
  int i;
  for (i = 0; i < 16; i++) r[i] = a[i];
}

/* Arithmetic right shift of a possibly negative limb, spelled without implementation-defined >>. */
static int64_t asr(int64_t v, unsigned bits) {
  int64_t d = (int64_t)1 << bits;
  return v >= 0 ? v / d : -((-v + d - 1) / d);
}
#define shr16(v) asr((v), 16)
#define shr8(v) asr((v), 8)

static void car25519(gf o) {
  int i;
  int64_t c;
  for (i = 0; i < 16; i++) {
    o[i] += (int64_t)1 << 16;
    c = shr16(o[i]);
    if (i < 15) {
      o[i + 1] += c - 1;
    } else {
      o[0] += 38 * (c - 1);
    }
    o[i] -= c * 65536;
  }
}

static void sel25519(gf p, gf q, int b) {
  int64_t t, c = ~((int64_t)b - 1);
  int i;
  for (i = 0; i < 16; i++) {
    t = c & (p[i] ^ q[i]);
    p[i] ^= t;
    q[i] ^= t;
  }
}

static void pack25519(uint8_t *o, const gf n) {
  int i, j, b;
  gf m, t;
  for (i = 0; i < 16; i++) t[i] = n[i];
  car25519(t);
  car25519(t);
  car25519(t);
  for (j = 0; j < 2; j++) {
    m[0] = t[0] - 0xffed;
    for (i = 1; i < 15; i++) {
      m[i] = t[i] - 0xffff - (shr16(m[i - 1]) & 1);
      m[i - 1] &= 0xffff;
    }
    m[15] = t[15] - 0x7fff - (shr16(m[14]) & 1);
    b = (int)(shr16(m[15]) & 1);
    m[14] &= 0xffff;
    sel25519(t, m, 1 - b);
  }
  for (i = 0; i < 16; i++) {
    o[2 * i] = (uint8_t)(t[i] & 0xff);
    o[2 * i + 1] = (uint8_t)((t[i] >> 8) & 0xff);
  }
}

static uint8_t par25519(const gf a) {
  uint8_t d[32];
  pack25519(d, a);
  return d[0] & 1;
}

static void A(gf o, const gf a, const gf b) {
  int i;
  for (i = 0; i < 16; i++) o[i] = a[i] + b[i];
}

static void Z(gf o, const gf a, const gf b) {
  int i;
  for (i = 0; i < 16; i++) o[i] = a[i] - b[i];
}

static void M(gf o, const gf a, const gf b) {
  int64_t t[31];
  int i, j;
  for (i = 0; i < 31; i++) t[i] = 0;
  for (i = 0; i < 16; i++) {
    for (j = 0; j < 16; j++) t[i + j] += a[i] * b[j];
  }
  for (i = 0; i < 15; i++) t[i] += 38 * t[i + 16];
  for (i = 0; i < 16; i++) o[i] = t[i];
  car25519(o);
  car25519(o);
}

static void S(gf o, const gf a) { M(o, a, a); }

static void inv25519(gf o, const gf i) {
  gf c;
  int a;
  for (a = 0; a < 16; a++) c[a] = i[a];
  for (a = 253; a >= 0; a--) {
    S(c, c);
    if (a != 2 && a != 4) M(c, c, i);
  }
  for (a = 0; a < 16; a++) o[a] = c[a];
}

/* ---- the group: extended coordinates (X, Y, Z, T) ---------------------------------------------- */

static void add(gf p[4], gf q[4]) {
  gf a, b, c, d, t, e, f, g, h;
  Z(a, p[1], p[0]);
  Z(t, q[1], q[0]);
  M(a, a, t);
  A(b, p[0], p[1]);
  A(t, q[0], q[1]);
  M(b, b, t);
  M(c, p[3], q[3]);
  M(c, c, D2);
  M(d, p[2], q[2]);
  A(d, d, d);
  Z(e, b, a);
  Z(f, d, c);
  A(g, d, c);
  A(h, b, a);
  M(p[0], e, f);
  M(p[1], h, g);
  M(p[2], g, f);
  M(p[3], e, h);
}

static void cswap(gf p[4], gf q[4], uint8_t b) {
  int i;
  for (i = 0; i < 4; i++) sel25519(p[i], q[i], b);
}

static void pack(uint8_t r[32], gf p[4]) {
  gf tx, ty, zi;
  inv25519(zi, p[2]);
  M(tx, p[0], zi);
  M(ty, p[1], zi);
  pack25519(r, ty);
  r[31] ^= (uint8_t)(par25519(tx) << 7);
}

/* Constant-time double-and-add ladder over all 256 bits of s. */
static void scalarmult(gf p[4], gf q[4], const uint8_t s[32]) {
  int i;
  set25519(p[0], gf0);
  set25519(p[1], gf1);
  set25519(p[2], gf1);
  set25519(p[3], gf0);
  for (i = 255; i >= 0; --i) {
    uint8_t b = (uint8_t)((s[i / 8] >> (i & 7)) & 1);
    cswap(p, q, b);
    add(q, p);
    add(p, p);
    cswap(p, q, b);
  }
}

static void scalarbase(gf p[4], const uint8_t s[32]) {
  gf q[4];
  set25519(q[0], X);
  set25519(q[1], Y);
  set25519(q[2], gf1);
  M(q[3], X, Y);
  scalarmult(p, q, s);
}

/* ---- scalars mod L = 2^252 + 27742317777372353535851937790883648493 ----------------------------- */

static const int64_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                              0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                              0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

static void modL(uint8_t *r, int64_t x[64]) {
  int64_t carry;
  int i, j;
  for (i = 63; i >= 32; --i) {
    carry = 0;
    for (j = i - 32; j < i - 12; ++j) {
      x[j] += carry - 16 * x[i] * L[j - (i - 32)];
      carry = shr8(x[j] + 128);
      x[j] -= carry * 256;
    }
    x[j] += carry;
    x[i] = 0;
  }
  carry = 0;
  for (j = 0; j < 32; j++) {
    x[j] += carry - asr(x[31], 4) * L[j];
    carry = shr8(x[j]);
    x[j] &= 255;
  }
  for (j = 0; j < 32; j++) x[j] -= carry * L[j];
  for (i = 0; i < 32; i++) {
    x[i + 1] += shr8(x[i]);
    r[i] = (uint8_t)(x[i] & 255);
  }
}

static void reduce(uint8_t r[64]) {
  int64_t x[64];
  int i;
  for (i = 0; i < 64; i++) x[i] = (int64_t)r[i];
  for (i = 0; i < 64; i++) r[i] = 0;
  modL(r, x);
}

/* ---- RFC 8032 ----------------------------------------------------------------------------------- */

static void expand_seed(uint8_t d[64], const uint8_t seed[32]) {
  sp_sha512_ctx h;
  sp_sha512_init(&h);
  sp_sha512_update(&h, seed, 32);
  sp_sha512_final(&h, d);
  d[0] &= 248;
  d[31] &= 127;
  d[31] |= 64;
}

void sp_ed25519_public_key(uint8_t public_key[32], const uint8_t seed[32]) {
  uint8_t d[64];
  gf p[4];
  expand_seed(d, seed);
  scalarbase(p, d);
  pack(public_key, p);
  memset(d, 0, sizeof d);
}

void sp_ed25519_sign(uint8_t signature[64], const uint8_t seed[32], const uint8_t *public_key,
                     sp_ed25519_message_fn write_message, void *message_ctx) {
  uint8_t d[64], r[64], h[64], pk[32];
  int64_t x[64];
  gf p[4];
  sp_sha512_ctx hash;
  int i, j;

  expand_seed(d, seed);
  if (public_key != NULL) {
    memcpy(pk, public_key, 32);
  } else {
    sp_ed25519_public_key(pk, seed);
  }

  /* r = H(prefix || M) mod L; R = rB */
  sp_sha512_init(&hash);
  sp_sha512_update(&hash, d + 32, 32);
  write_message(message_ctx, &hash);
  sp_sha512_final(&hash, r);
  reduce(r);
  scalarbase(p, r);
  pack(signature, p);

  /* k = H(R || A || M) mod L; S = r + k * a mod L */
  sp_sha512_init(&hash);
  sp_sha512_update(&hash, signature, 32);
  sp_sha512_update(&hash, pk, 32);
  write_message(message_ctx, &hash);
  sp_sha512_final(&hash, h);
  reduce(h);

  for (i = 0; i < 64; i++) x[i] = 0;
  for (i = 0; i < 32; i++) x[i] = (int64_t)r[i];
  for (i = 0; i < 32; i++) {
    for (j = 0; j < 32; j++) x[i + j] += (int64_t)h[i] * (int64_t)d[j];
  }
  modL(signature + 32, x);

  memset(d, 0, sizeof d);
  memset(r, 0, sizeof r);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int sp_ed25519_disabled;
#endif
