/** The verify answer's `code`. */
export type VerifyCode =
  | "VALID"
  | "NOT_FOUND"
  | "MALFORMED"
  | "EXPIRED"
  | "REVOKED"
  | "DISABLED"
  | "INSUFFICIENT_SCOPES"
  | "FORBIDDEN_IP"
  | "INSUFFICIENT_PERMISSIONS"
  | "RATE_LIMITED"
  | "USAGE_EXCEEDED"
  | "FORBIDDEN";

/** One named limit and what this call took from it. */
export interface NamedCost {
  name: string;
  cost?: number;
}

/** What `verify` asks. */
export interface VerifyRequest {
  /** The whole key as presented by the caller. */
  key: string;
  /** Scopes the key must hold; otherwise the answer is INSUFFICIENT_SCOPES. */
  scopes?: readonly string[];
  /** Units taken from the key's rate limits and quota (default 1; 0 checks only). */
  cost?: number;
  /** Check only these named limits, each at its own cost. */
  ratelimits?: readonly NamedCost[];
  /** The address of the client that presented the key, as your API saw it. */
  clientIp?: string;
  /**
   * A permission query the key must satisfy (`"documents.read AND (documents.write OR
   * admin)"`); otherwise INSUFFICIENT_PERMISSIONS. Calls with one always go to the server.
   */
  permissions?: string;
  /** For a signed token: the audience this service is (a token naming another is refused). */
  audience?: string;
}

export interface VerifyOwner {
  id: string;
  externalId: string | null;
}

export interface VerifyRotation {
  successorKeyId: string;
  graceUntil: string;
}

/** A rate limit applied to this call. */
export interface VerifyRatelimit {
  name: string;
  /** Whose bucket: `key`, `owner` or `client`. */
  scope: string;
  limit: number;
  durationMs: number;
  remaining: number;
  /** RFC 3339: when the limit is whole again. */
  resetAt: string;
  /** For an exceeded limit: milliseconds until the same call would pass, if ever. */
  retryAfterMs: number | null;
  exceeded: boolean;
}

/**
 * The server's verify answer (`POST /v1/keys/verify`) in camelCase. Fields beyond
 * `valid` and `code` are `null` until the secret matched (NOT_FOUND, MALFORMED).
 */
export interface VerifyResult {
  valid: boolean;
  code: VerifyCode;
  keyId: string | null;
  keyspaceId: string | null;
  /** The keyspace's name. */
  keyspace: string | null;
  owner: VerifyOwner | null;
  name: string | null;
  scopes: string[] | null;
  meta: Record<string, unknown> | null;
  expiresAt: string | null;
  rotation: VerifyRotation | null;
  ratelimits: VerifyRatelimit[];
  /** Remaining uses under the key's (or owner's) quota; `null` without one. */
  remaining: number | null;
  /** For INSUFFICIENT_PERMISSIONS: the query's permissions the key lacks; else `null`. */
  missingPermissions: string[] | null;
  /** A signed token was verified rather than the key (`scopes`, `expiresAt` are the token's). */
  token: boolean;
  /** Whether this answer came from the local cache rather than the server. */
  cached: boolean;
}
