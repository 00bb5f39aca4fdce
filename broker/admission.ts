/**
 * Who may open a connection at all, decided when the socket is accepted, before a byte is read:
 * total and per-address connection caps, and a ban on addresses with too many failed logins within a
 * window (the "flapping" ban of EMQX). A banned address costs the broker one accept and one close, so
 * guessing from it is slow and nobody else is slowed down.
 */
import type { DropReason } from './codes.ts';

/** Why a connection is refused, as counted (broker/codes.ts). */
export type AdmissionRefusal = Extract<DropReason, 'banned_address' | 'connection_limit_total' | 'connection_limit_address'>;

export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  loginFailuresMax: number;
  loginFailureWindowMs: number;
  loginBanMs: number;
}

export class Admission {
  private total = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly failures = new Map<string, { count: number; windowStart: number }>();
  private readonly bannedUntil = new Map<string, number>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  get openConnections(): number {
    return this.total;
  }

  get bannedAddresses(): number {
    this.sweep();
    return this.bannedUntil.size;
  }

  isBanned(address: string): boolean {
    const until = this.bannedUntil.get(address);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.bannedUntil.delete(address);
    return false;
  }

  /** Takes a slot for a new connection, or says why not. Call `release` when an admitted one closes. */
  admit(address: string): AdmissionRefusal | undefined {
    if (this.isBanned(address)) return 'banned_address';
    if (this.total >= this.limits.maxConnections) return 'connection_limit_total';
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= this.limits.maxConnectionsPerAddress) return 'connection_limit_address';
    this.total++;
    this.perAddress.set(address, fromAddress + 1);
    return undefined;
  }

  release(address: string): void {
    this.total--;
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left <= 0) this.perAddress.delete(address);
    else this.perAddress.set(address, left);
  }

  /** Counts a failed login; returns true when this failure got the address banned. */
  recordLoginFailure(address: string): boolean {
    const now = this.now();
    let entry = this.failures.get(address);
    if (entry === undefined || now - entry.windowStart > this.limits.loginFailureWindowMs) {
      entry = { count: 0, windowStart: now };
      this.failures.set(address, entry);
    }
    entry.count++;
    if (entry.count < this.limits.loginFailuresMax) return false;
    this.failures.delete(address);
    this.bannedUntil.set(address, now + this.limits.loginBanMs);
    return true;
  }

  /** Forgets expired windows and bans, so a scan from many addresses cannot grow the maps forever. */
  sweep(): void {
    const now = this.now();
    for (const [address, entry] of this.failures) if (now - entry.windowStart > this.limits.loginFailureWindowMs) this.failures.delete(address);
    for (const [address, until] of this.bannedUntil) if (until <= now) this.bannedUntil.delete(address);
  }
}
