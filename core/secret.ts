/**
 * Comparing a presented secret (a service password, a viewer token) with the configured one in
 * constant time. Both sides are hashed first, so the comparison takes the same time whatever their
 * lengths and wherever they first differ; timingSafeEqual alone needs equal lengths and would leak
 * the length of the secret by refusing early.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const sha256 = (data: string | Buffer): Buffer => createHash('sha256').update(data).digest();

export function sameSecret(presented: string | Buffer, expected: string | Buffer): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}
