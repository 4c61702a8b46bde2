/**
 * The local cache of verify answers, with the rules of the server's own proxy node
 * (`crates/server/src/gateway/remote.rs`):
 *
 * - only a VALID answer without rate limits and without quota (`ratelimits` empty,
 *   `remaining` null) is kept: a limited key is counted by the server on every call;
 * - entries are keyed by the SHA-256 of the presented key and the client address
 *   (the key itself is never kept; a key with an IP allowlist is valid from some
 *   addresses only) and hold the answer with the key's scopes, so a call asking other scopes is
 *   decided here with the server's scope rule (INSUFFICIENT_SCOPES when not covered);
 * - an entry never outlives the key's `expires_at`, its rotation's `grace_until`, nor
 *   the cache TTL;
 * - the change stream drops a key's entries (`key`) or all of them (`all`, `reset`,
 *   anything unknown); every drop bumps an epoch, and an answer fetched while the epoch
 *   moved is not kept, so a revocation is never overwritten by an answer from before it;
 * - entries are served only while the stream has sent a heartbeat (or reset) within
 *   half of `coherenceMs`: a silent stream means every call goes to the server.
 *
 * Time is a parameter (`now`, monotonic milliseconds) so tests move it by hand.
 */
import type { VerifyResult } from "./types.js";
import { scopesCover } from "./scopes.js";

export interface CacheOptions {
  /** Longest an answer is served from the cache (default 60,000 ms). */
  ttlMs?: number;
  /**
   * The server's `cache_coherence_ms` (default 1,000): the cache is trusted only while
   * the stream spoke within half of it; the follower reconnects after twice it of silence.
   */
  coherenceMs?: number;
  /** Most answers kept (default 10,000); the oldest goes first. */
  maxEntries?: number;
}

export const DEFAULT_TTL_MS = 60_000;
export const DEFAULT_COHERENCE_MS = 1_000;
export const DEFAULT_MAX_ENTRIES = 10_000;

interface Entry {
  readonly answer: VerifyResult;
  readonly keyId: string;
  /** Served until then (monotonic ms): the earliest of TTL, expiry and rotation grace. */
  readonly until: number;
  /** The same answer refused for scopes, made on first need. */
  insufficient?: VerifyResult;
}

/** Milliseconds on a monotonic clock. */
export const monotonic = (): number => performance.now();

export class VerifyCache {
  readonly ttlMs: number;
  readonly coherenceMs: number;
  readonly maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #vouched = new Map<string, { answer: VerifyResult; until: number }>();
  readonly #byKeyId = new Map<string, Set<string>>();
  #epoch = 0;
  #heardAt: number | undefined;

  constructor(options: CacheOptions = {}, now: () => number = monotonic) {
    this.ttlMs = positive(options.ttlMs, DEFAULT_TTL_MS, "ttlMs");
    this.coherenceMs = positive(options.coherenceMs, DEFAULT_COHERENCE_MS, "coherenceMs");
    this.maxEntries = positive(options.maxEntries, DEFAULT_MAX_ENTRIES, "maxEntries");
    this.#now = now;
  }

  /** Bumped by every invalidation. */
  get epoch(): number {
    return this.#epoch;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The stream vouched for everything so far (a heartbeat or a reset). */
  heard(): void {
    this.#heardAt = this.#now();
  }

  /** The stream is lost: stop trusting the cache until it speaks again. */
  forget(): void {
    this.#heardAt = undefined;
    // Answers in flight while the stream is down are not kept either.
    this.#epoch++;
  }

  /** Whether cached answers may be served now. */
  coherent(): boolean {
    return this.#heardAt !== undefined && this.#now() - this.#heardAt <= this.coherenceMs / 2;
  }

  invalidateKey(keyId: string): void {
    this.#epoch++;
    for (const entry of [...this.#vouched.keys()]) {
      if (entry.startsWith(`${keyId}\0`)) this.#vouched.delete(entry);
    }
    const digests = this.#byKeyId.get(keyId);
    if (digests === undefined) return;
    this.#byKeyId.delete(keyId);
    for (const d of digests) this.#entries.delete(d);
  }

  invalidateAll(): void {
    this.#epoch++;
    this.#vouched.clear();
    this.#entries.clear();
    this.#byKeyId.clear();
  }

  /**
   * The cached answer for the key with SHA-256 `digest`, decided for `scopes`, or
   * `undefined` when the server must be asked.
   */
  lookup(digest: string, scopes: readonly string[] | undefined): VerifyResult | undefined {
    const entry = this.#entries.get(digest);
    if (entry === undefined || !this.coherent()) return undefined;
    if (this.#now() >= entry.until) {
      this.#remove(digest, entry.keyId);
      return undefined;
    }
    if (scopes === undefined || scopes.length === 0 || scopesCover(entry.answer.scopes ?? [], scopes)) {
      return entry.answer;
    }
    entry.insufficient ??= deepFreeze({
      ...entry.answer,
      valid: false,
      code: "INSUFFICIENT_SCOPES",
    });
    return entry.insufficient;
  }

  /**
   * Keeps `answer` for `digest` if it may be cached and nothing was invalidated since
   * `epochBefore` (taken, with `coherentBefore`, before the server was asked).
   */
  fill(
    digest: string,
    answer: VerifyResult,
    epochBefore: number,
    coherentBefore: boolean,
  ): boolean {
    if (!coherentBefore || epochBefore !== this.#epoch || !cacheable(answer)) return false;
    const keyId = answer.keyId as string;
    const now = this.#now();
    let until = now + this.ttlMs;
    const wall = Date.now();
    for (const at of [answer.expiresAt, answer.rotation?.graceUntil]) {
      if (at == null) continue;
      const ms = Date.parse(at);
      if (Number.isNaN(ms)) return false;
      until = Math.min(until, now + (ms - wall));
    }
    if (until <= now) return false;
    const previous = this.#entries.get(digest);
    if (previous !== undefined) this.#remove(digest, previous.keyId);
    while (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.entries().next().value;
      if (oldest === undefined) break;
      this.#remove(oldest[0], oldest[1].keyId);
    }
    const cached = deepFreeze({ ...structuredClone(answer), cached: true });
    this.#entries.set(digest, { answer: cached, keyId, until });
    let digests = this.#byKeyId.get(keyId);
    if (digests === undefined) this.#byKeyId.set(keyId, (digests = new Set()));
    digests.add(digest);
    return true;
  }

  /**
   * The server's answer to a token of `keyId`, while the stream vouches and no event
   * named the key since: its other tokens are answered offline.
   */
  vouched(keyId: string, clientIp: string | undefined): VerifyResult | undefined {
    if (!this.coherent()) return undefined;
    // By address, as answers are: a key with an IP allowlist is valid from some only.
    const found = this.#vouched.get(`${keyId}\0${clientIp ?? ""}`);
    if (found === undefined || this.#now() >= found.until) return undefined;
    return found.answer;
  }

  /** Keeps the server's answer to a token of an unlimited key (the rule of `fill`). */
  vouch(
    answer: VerifyResult,
    clientIp: string | undefined,
    epochBefore: number,
    coherentBefore: boolean,
  ): boolean {
    if (!coherentBefore || epochBefore !== this.#epoch || !answer.token || !cacheable(answer)) return false;
    const keyId = `${answer.keyId as string}\0${clientIp ?? ""}`;
    if (!this.#vouched.has(keyId) && this.#vouched.size >= this.maxEntries) {
      const oldest = this.#vouched.keys().next().value;
      if (oldest !== undefined) this.#vouched.delete(oldest);
    }
    this.#vouched.set(keyId, { answer: deepFreeze({ ...structuredClone(answer), cached: true }), until: this.#now() + this.ttlMs });
    return true;
  }

  #remove(digest: string, keyId: string): void {
    this.#entries.delete(digest);
    const digests = this.#byKeyId.get(keyId);
    if (digests === undefined) return;
    digests.delete(digest);
    if (digests.size === 0) this.#byKeyId.delete(keyId);
  }
}

/** A VALID answer for a key with neither rate limits nor quota. */
export function cacheable(answer: VerifyResult): boolean {
  return (
    answer.valid &&
    answer.code === "VALID" &&
    typeof answer.keyId === "string" &&
    answer.ratelimits.length === 0 &&
    answer.remaining === null
  );
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
    throw new TypeError(`cache.${name} must be a positive number`);
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
