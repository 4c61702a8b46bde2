/**
 * The admin API's objects, as the server sends them (snake_case, as in
 * docs/openapi.json). Only the commonly used fields are named; the server's other
 * fields come along untouched.
 */

/** One page of a list: `next_cursor` is `null` on the last page. */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface RateLimitBody {
  name: string;
  limit: number;
  duration_ms: number;
  burst?: number | null;
}

export interface Keyspace {
  id: string;
  name: string;
  prefix: string;
  ratelimits: RateLimitBody[];
  ip_allowlist: string[];
  /** New keys' secret strength: 22 bytes (30 characters) or 32 (44). */
  secret_bytes: number;
  created_at: string;
  updated_at: string;
  [field: string]: unknown;
}

export interface CreateKeyspace {
  name: string;
  prefix: string;
  ratelimits?: RateLimitBody[];
  ip_allowlist?: string[];
  default_grace_seconds?: number | null;
  max_key_age_seconds?: number | null;
  /** 22 (default) or 32: 256-bit secrets for the keyspace's new keys. */
  secret_bytes?: 22 | 32;
  [field: string]: unknown;
}

export interface Key {
  key_id: string;
  keyspace_id: string;
  owner_id: string | null;
  name: string | null;
  /** Identifies the key without revealing it: `acme_live_7Gx9QbWkP2mZ_…aB3c`. */
  start: string;
  scopes: string[];
  meta: Record<string, unknown>;
  enabled: boolean;
  expires_at: string | null;
  revoked_at: string | null;
  revoked_reason: string | null;
  rotated_to: string | null;
  grace_until: string | null;
  ratelimits: RateLimitBody[];
  /** Networks (CIDR) the key may be used from; empty for any address. */
  ip_allowlist: string[];
  /** The plan the key is on (`/v1/plans`), if any. */
  plan?: string | null;
  last_used_at: string | null;
  created_at: string;
  updated_at: string;
  [field: string]: unknown;
}

/** A key just made: `key` is the plaintext, shown this once. */
export interface CreatedKey extends Key {
  key: string;
}

export interface CreateKey {
  keyspace_id: string;
  owner_id?: string | null;
  name?: string | null;
  scopes?: string[];
  meta?: Record<string, unknown>;
  expires_at?: string | null;
  enabled?: boolean | null;
  ratelimits?: RateLimitBody[];
  quota?: { remaining: number; refill?: unknown } | null;
  recoverable?: boolean | null;
  /** Networks (CIDR) or addresses the key may be used from; at most 100. */
  ip_allowlist?: string[];
  /** A plan (`/v1/plans`) to put the key on. */
  plan?: string | null;
  [field: string]: unknown;
}

export interface UpdateKey {
  name?: string | null;
  owner_id?: string | null;
  scopes?: string[] | null;
  meta?: Record<string, unknown> | null;
  expires_at?: string | null;
  enabled?: boolean | null;
  ratelimits?: RateLimitBody[] | null;
  quota?: { remaining: number; refill?: unknown } | null;
  /** Replaces the IP allowlist; `[]` removes it. */
  ip_allowlist?: string[];
  [field: string]: unknown;
}

export interface ListKeys {
  keyspace_id?: string;
  owner_id?: string;
  sort?: string;
  search?: string;
  state?: string;
  limit?: number;
  cursor?: string;
}

export interface Owner {
  id: string;
  external_id: string;
  name: string | null;
  meta: Record<string, unknown>;
  ratelimits: RateLimitBody[];
  ip_allowlist: string[];
  created_at: string;
  updated_at: string;
  [field: string]: unknown;
}

export interface CreateOwner {
  external_id: string;
  name?: string | null;
  meta?: Record<string, unknown>;
  ratelimits?: RateLimitBody[];
  quota?: { remaining: number; refill?: unknown } | null;
  ip_allowlist?: string[];
  [field: string]: unknown;
}

export interface UsageQuery {
  from?: string;
  to?: string;
  granularity?: string;
}

export interface UsageSeries {
  granularity: string;
  from: string;
  to: string;
  data: { start: string; total: number; counts: Record<string, number> }[];
  total: number;
  totals: Record<string, number>;
  [field: string]: unknown;
}

export interface AuditQuery {
  keyspace_id?: string;
  target_id?: string;
  action?: string;
  actor?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

export interface AuditEvent {
  id: string;
  occurred_at: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  keyspace_id: string | null;
  client_ip: string | null;
  changes: Record<string, unknown>;
  [field: string]: unknown;
}
