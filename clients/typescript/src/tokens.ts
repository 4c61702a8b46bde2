/**
 * Signed tokens (`POST /v1/tokens`), checked offline against the server's JWKS with
 * Node's own Ed25519. The same rules as the Rust client (`crates/client/src/tokens.rs`)
 * and the server (`keyhaven_core::token`):
 *
 * - only compact JWS tokens are checked here (biscuits go to the server, which verifies
 *   them too); the header must say `alg: EdDSA` (`none`, `HS256` and the rest are refused
 *   before any key is looked at) with no `crit`, and its `kid` must be one of the JWKS's
 *   Ed25519 keys;
 * - past its `exp` a token is EXPIRED; a token naming an audience is NOT_FOUND unless the
 *   verifier is that audience; scopes asked for must be the token's (INSUFFICIENT_SCOPES).
 *   Those refusals need no call;
 * - a token that passes still needs its key to work: the first token of a key goes to
 *   the server, and with the cache on its VALID answer (for an unlimited key) vouches for
 *   the key's other tokens until the change stream names the key.
 */
import * as crypto from "node:crypto";

import { scopesCover } from "./scopes.js";
import type { VerifyCode } from "./types.js";

/** Longest token checked; a longer string is MALFORMED. */
export const MAX_TOKEN_LEN = 16 * 1024;
/** A fetched JWKS is used this long before it is fetched again. */
const JWKS_TTL_MS = 300_000;
/** Least time between two fetches for a `kid` the JWKS lacks. */
const REFETCH_GAP_MS = 10_000;

/** What a verified token says. */
export interface TokenClaims {
  sub: string;
  ks: string;
  scopes: string[];
  exp: number;
  owner: string | null;
  aud: string | null;
}

/** A refusal decided offline. */
export interface TokenRefusal {
  code: VerifyCode;
  claims?: TokenClaims;
}

/** Whether `presented` has a compact JWS's shape (Keyhaven keys never do). */
export function looksLikeToken(presented: string): boolean {
  return presented.startsWith("eyJ") && presented.split(".").length === 3 && presented.length <= MAX_TOKEN_LEN;
}

function json(part: string): unknown {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

/** The JWKS as last fetched: Ed25519 public keys by `kid`. */
export class TokenKeys {
  #keys: Map<string, crypto.KeyObject> | undefined;
  #at: number | undefined;
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Whether the JWKS should be fetched now (`refetch`: for a token naming an unknown key). */
  due(token?: string): boolean {
    if (this.#keys === undefined || this.#at === undefined) return true;
    const age = this.#now() - this.#at;
    if (age >= JWKS_TTL_MS) return true;
    return token !== undefined && !this.#knows(token) && age >= REFETCH_GAP_MS;
  }

  /** Takes a fetched JWKS document (`undefined`: the fetch failed; keep what we had). */
  load(document: unknown): void {
    this.#at = this.#now();
    if (document === null || typeof document !== "object") return;
    const keys = new Map<string, crypto.KeyObject>();
    const list = (document as { keys?: unknown }).keys;
    for (const jwk of Array.isArray(list) ? list : []) {
      if (jwk?.kty !== "OKP" || jwk?.crv !== "Ed25519" || typeof jwk.kid !== "string" || typeof jwk.x !== "string") {
        continue;
      }
      try {
        keys.set(jwk.kid, crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" }));
      } catch {
        // Not a usable key: skipped.
      }
    }
    this.#keys = keys;
  }

  #knows(token: string): boolean {
    try {
      const kid = (json(token.split(".")[0] ?? "") as { kid?: unknown }).kid;
      return typeof kid === "string" && this.#keys?.has(kid) === true;
    } catch {
      return true; // unreadable: no fetch for junk
    }
  }

  /** The token's claims, or the refusal. */
  check(token: string, audience: string | undefined, scopes: readonly string[] | undefined, nowSeconds = Date.now() / 1000): TokenClaims | TokenRefusal {
    const parts = token.split(".");
    if (parts.length !== 3 || token.length > MAX_TOKEN_LEN) return { code: "MALFORMED" };
    const [head, body, sig] = parts as [string, string, string];
    let header: Record<string, unknown>;
    try {
      header = json(head) as Record<string, unknown>;
    } catch {
      return { code: "MALFORMED" };
    }
    if (header === null || typeof header !== "object" || header.alg !== "EdDSA" || "crit" in header) {
      return { code: "NOT_FOUND" };
    }
    const key = typeof header.kid === "string" ? this.#keys?.get(header.kid) : undefined;
    if (key === undefined) return { code: "NOT_FOUND" };
    const signature = Buffer.from(sig, "base64url");
    if (!crypto.verify(null, Buffer.from(`${head}.${body}`, "ascii"), key, signature)) return { code: "NOT_FOUND" };
    let payload: Record<string, unknown>;
    try {
      payload = json(body) as Record<string, unknown>;
    } catch {
      return { code: "MALFORMED" };
    }
    const claims = readClaims(payload);
    if (claims === undefined) return { code: "MALFORMED" };
    if (claims.exp <= nowSeconds) return { code: "EXPIRED" };
    if (claims.aud !== null && claims.aud !== audience) return { code: "NOT_FOUND" };
    if (scopes !== undefined && scopes.length > 0 && !scopesCover(claims.scopes, scopes)) {
      return { code: "INSUFFICIENT_SCOPES", claims };
    }
    return claims;
  }
}

function readClaims(p: Record<string, unknown>): TokenClaims | undefined {
  if (p === null || typeof p !== "object") return undefined;
  const { sub, ks, exp, scopes, owner, aud } = p;
  if (typeof sub !== "string" || typeof ks !== "string" || !Number.isInteger(exp)) return undefined;
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === "string")) return undefined;
  return {
    sub,
    ks,
    exp: exp as number,
    scopes: scopes as string[],
    owner: typeof owner === "string" ? owner : null,
    aud: typeof aud === "string" ? aud : null,
  };
}

/** Whether `checked` is a refusal. */
export function isRefusal(checked: TokenClaims | TokenRefusal): checked is TokenRefusal {
  return "code" in checked;
}
