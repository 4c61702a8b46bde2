/**
 * The Keyhaven client: `verify` (optionally from a local cache kept coherent by the
 * change stream) and the admin API.
 */
import * as crypto from "node:crypto";

import { VerifyCache, type CacheOptions } from "./cache.js";
import { ChangeFollower, reason } from "./changes.js";
import { KeyhavenError, scrub } from "./errors.js";
import type {
  AuditEvent,
  AuditQuery,
  CreateKey,
  CreateKeyspace,
  CreateOwner,
  CreatedKey,
  Key,
  Keyspace,
  ListKeys,
  Owner,
  Page,
  UpdateKey,
  UsageQuery,
  UsageSeries,
} from "./resources.js";
import type { VerifyCode, VerifyRatelimit, VerifyRequest, VerifyResult } from "./types.js";
import { VERSION } from "./version.js";
import { TokenKeys, isRefusal, looksLikeToken } from "./tokens.js";

export interface KeyhavenOptions {
  /** The server's base URL, such as `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** A root key; `keys:verify` for `verify` and the cache, more for the admin API. */
  rootKey: string;
  /** Per attempt, until the whole answer is read (default 5,000 ms). */
  timeoutMs?: number;
  /**
   * Further attempts after a network error (refused, reset, or no answer within
   * `timeoutMs`); never after an HTTP answer. Default 2 (3 attempts in all).
   */
  retries?: number;
  /**
   * Cache VALID answers of keys without limits, following `GET /v1/changes` (off by
   * default). `true` for the defaults, or the cache's options.
   */
  cache?: boolean | CacheOptions;
  /**
   * Default for middleware built on this client: let requests through (without an
   * identity) when Keyhaven cannot be reached. Off by default: fail closed (503).
   * `verify` itself always throws a {@link KeyhavenError} then.
   */
  failOpen?: boolean;
  /** Told when the change stream is lost (the follower reconnects by itself). */
  onStreamError?: (error: KeyhavenError) => void;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  /** Query parameters; `undefined` values are left out. */
  query?: Record<string, string | number | boolean | undefined> | undefined;
  /** Sent as `Idempotency-Key` (the same on every retry of this call). */
  idempotencyKey?: string | undefined;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_RETRIES = 2;
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** SHA-256 of `key`, the cache's index: the key itself is never kept. */
const digestOf: (key: string) => string =
  typeof (crypto as { hash?: unknown }).hash === "function"
    ? (key) => (crypto as unknown as { hash: (a: string, d: string, e: string) => string }).hash("sha256", key, "base64")
    : (key) => crypto.createHash("sha256").update(key).digest("base64");

export class Keyhaven {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly failOpen: boolean;
  readonly keyspaces: Keyspaces;
  readonly keys: Keys;
  readonly owners: Owners;
  readonly usage: Usage;
  readonly audit: Audit;
  readonly #authorization: string;
  readonly #rootKey: string;
  readonly #fetch: typeof fetch;
  readonly #cache: VerifyCache | undefined;
  readonly #tokenKeys = new TokenKeys();
  readonly #follower: ChangeFollower | undefined;

  constructor(options: KeyhavenOptions) {
    if (typeof options?.baseUrl !== "string" || options.baseUrl === "") {
      throw new TypeError("Keyhaven: baseUrl is required");
    }
    if (typeof options.rootKey !== "string" || options.rootKey === "") {
      throw new TypeError("Keyhaven: rootKey is required");
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retries = options.retries ?? DEFAULT_RETRIES;
    if (!(this.timeoutMs > 0)) throw new TypeError("Keyhaven: timeoutMs must be positive");
    if (!Number.isInteger(this.retries) || this.retries < 0) {
      throw new TypeError("Keyhaven: retries must be a whole number >= 0");
    }
    this.failOpen = options.failOpen === true;
    this.#rootKey = options.rootKey;
    this.#authorization = `Bearer ${options.rootKey}`;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    if (options.cache) {
      this.#cache = new VerifyCache(options.cache === true ? {} : options.cache);
      this.#follower = new ChangeFollower({
        url: `${this.baseUrl}/v1/changes`,
        headers: () => this.#headers(),
        cache: this.#cache,
        fetch: this.#fetch,
        onError: options.onStreamError,
      });
    }
    this.keyspaces = new Keyspaces(this);
    this.keys = new Keys(this);
    this.owners = new Owners(this);
    this.usage = new Usage(this);
    this.audit = new Audit(this);
  }

  /** Whether this client caches verify answers. */
  get caching(): boolean {
    return this.#cache !== undefined;
  }

  /** Whether the cache may serve answers now (the stream spoke lately). */
  get coherent(): boolean {
    return this.#cache?.coherent() ?? false;
  }

  /** The id of the last change-stream event processed (where a reconnection resumes). */
  get streamCursor(): string | undefined {
    return this.#follower?.cursor;
  }

  /**
   * Verifies a key: from the cache when it holds a trusted answer, else with
   * `POST /v1/keys/verify`. Resolves to the answer whatever its `code`; rejects with a
   * {@link KeyhavenError} only when no answer could be had.
   */
  async verify(request: VerifyRequest): Promise<VerifyResult> {
    const key = request?.key;
    if (typeof key !== "string") throw new TypeError("verify: key must be a string");
    // A cached answer knows the key's scopes, not its permissions.
    const cache = request.permissions === undefined ? this.#cache : undefined;
    const token = looksLikeToken(key);
    if (token && request.permissions === undefined && request.ratelimits === undefined) {
      this.#follower?.start();
      const answer = await this.#tokenAnswer(key, request);
      if (answer !== undefined) return answer;
    }
    let digest = "";
    let epoch = 0;
    let coherent = false;
    if (cache !== undefined) {
      this.#follower?.start();
      // Keyed by the address too: a key with an IP allowlist is valid only from some.
      // And by audience: a token is valid for its audience only.
      digest = digestOf(`${key}\0${request.clientIp ?? ""}\0${request.audience ?? ""}`);
      const hit = cache.lookup(digest, request.scopes);
      if (hit !== undefined) return hit;
      epoch = cache.epoch;
      coherent = cache.coherent();
    }
    const body: Record<string, unknown> = { key };
    if (request.scopes !== undefined) body.scopes = request.scopes;
    if (request.cost !== undefined) body.cost = request.cost;
    if (request.ratelimits !== undefined) body.ratelimits = request.ratelimits;
    if (request.clientIp !== undefined) body.client_ip = request.clientIp;
    if (request.permissions !== undefined) body.permissions = request.permissions;
    if (request.audience !== undefined) body.audience = request.audience;
    const raw = await this.#send("POST", "/v1/keys/verify", body, undefined, [key]);
    const answer = toResult(raw);
    // An answer to a call that named some limits lists only those: a key with other
    // limits would look unlimited, so it is never cached.
    if (cache !== undefined && request.ratelimits === undefined) {
      if (token) cache.vouch(answer, request.clientIp, epoch, coherent);
      else cache.fill(digest, answer, epoch, coherent);
    }
    return answer;
  }

  /**
   * A signed token's answer with no call to verify, or `undefined` (ask the server):
   * refused offline, or VALID for a key the server vouched for (see `tokens.ts`).
   */
  async #tokenAnswer(token: string, request: VerifyRequest): Promise<VerifyResult | undefined> {
    const keys = this.#tokenKeys;
    if (keys.due(token)) {
      let document: unknown;
      try {
        const response = await this.#fetch(`${this.baseUrl}/.well-known/jwks.json`, {
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        document = response.ok ? await response.json() : undefined;
      } catch {
        document = undefined;
      }
      keys.load(document);
    }
    const checked = keys.check(token, request.audience, request.scopes);
    if (isRefusal(checked)) {
      return Object.freeze({
        ...toResult({ valid: false, code: checked.code }),
        keyId: checked.claims?.sub ?? null,
        keyspaceId: checked.claims?.ks ?? null,
        token: checked.claims !== undefined,
      });
    }
    const known = this.#cache?.vouched(checked.sub, request.clientIp);
    if (known === undefined) return undefined;
    return Object.freeze({
      ...known,
      scopes: [...checked.scopes],
      expiresAt: new Date(checked.exp * 1000).toISOString(),
    });
  }

  /**
   * Starts following the change stream (verify does so on its first call) and resolves
   * `true` once the cache may serve, or `false` after `timeoutMs` (or without a cache).
   */
  async ready(timeoutMs = 5_000): Promise<boolean> {
    const cache = this.#cache;
    if (cache === undefined) return false;
    this.#follower?.start();
    const deadline = Date.now() + timeoutMs;
    while (!cache.coherent()) {
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  /** Stops the change-stream follower (the cache is not trusted afterwards). */
  async close(): Promise<void> {
    await this.#follower?.close();
  }

  /**
   * Any call to the API: `method` and `path` (from `/v1/…`), a JSON `body`; resolves to
   * the parsed JSON answer (`undefined` for an empty one), rejects with a
   * {@link KeyhavenError} for any non-2xx answer.
   */
  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<T> {
    return (await this.#send(method, path, body, options, secretsIn(body))) as T;
  }

  #headers(): Record<string, string> {
    return { authorization: this.#authorization, "user-agent": `keyhaven-js/${VERSION}` };
  }

  async #send(
    method: string,
    path: string,
    body: unknown,
    options: RequestOptions | undefined,
    secrets: readonly string[],
  ): Promise<unknown> {
    if (!path.startsWith("/")) throw new TypeError("request: path must start with /");
    const hidden = [this.#rootKey, ...secrets];
    let url = this.baseUrl + path;
    const query = options?.query;
    if (query !== undefined) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        if (value !== undefined) params.append(name, String(value));
      }
      const text = params.toString();
      if (text !== "") url += (url.includes("?") ? "&" : "?") + text;
    }
    const headers = this.#headers();
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    if (options?.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey;
    const what = `${method} ${path.split("?")[0]}`;
    const resendable = mayResendAfterSending(method, path, options?.idempotencyKey);
    for (let attempt = 0; ; attempt++) {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), this.timeoutMs);
      let response: Response;
      try {
        response = await this.#fetch(url, {
          method,
          headers,
          body: payload ?? null,
          signal: abort.signal,
        });
      } catch (e) {
        clearTimeout(timer);
        const timedOut = abort.signal.aborted;
        if (attempt < this.retries && (resendable || (!timedOut && notConnected(e)))) {
          await new Promise((r) => setTimeout(r, backoff(attempt)));
          continue;
        }
        throw new KeyhavenError({
          message: timedOut
            ? `Keyhaven did not answer ${what} within ${this.timeoutMs} ms`
            : `Keyhaven cannot be reached (${reason(e)}) for ${what}`,
          code: timedOut ? "timeout" : "unreachable",
        });
      }
      let text: string;
      try {
        text = await response.text();
      } catch {
        throw new KeyhavenError({
          message: `Keyhaven's answer to ${what} broke off (${response.status})`,
          status: response.status,
          code: abort.signal.aborted ? "timeout" : "unreadable_answer",
        });
      } finally {
        clearTimeout(timer);
      }
      if (response.ok) {
        if (text === "") return undefined;
        try {
          return JSON.parse(text);
        } catch {
          throw new KeyhavenError({
            message: `Keyhaven answered ${what} with something other than JSON`,
            status: response.status,
            code: "unreadable_answer",
          });
        }
      }
      throw problemError(what, response.status, text, hidden);
    }
  }

  /** Never shows the root key: `Keyhaven { baseUrl, caching, rootKey: '<redacted>' }`. */
  [INSPECT](): string {
    return `Keyhaven { baseUrl: '${this.baseUrl}', caching: ${this.caching}, rootKey: '<redacted>' }`;
  }

  toJSON(): Record<string, unknown> {
    return { baseUrl: this.baseUrl, caching: this.caching, rootKey: "<redacted>" };
  }
}

/** Strings under a `key` field anywhere in a body (verify, import, leak reports): secrets. */
function secretsIn(body: unknown, depth = 0, out: string[] = []): string[] {
  if (depth > 4 || body === null || typeof body !== "object") return out;
  for (const [name, value] of Object.entries(body)) {
    if (name === "key" && typeof value === "string") out.push(value);
    else secretsIn(value, depth + 1, out);
  }
  return out;
}

function backoff(attempt: number): number {
  const base = 50 * 2 ** attempt;
  return base + Math.floor(Math.random() * base);
}

function problemError(
  what: string,
  status: number,
  text: string,
  secrets: readonly string[],
): KeyhavenError {
  let problem: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === "object") problem = parsed as Record<string, unknown>;
  } catch {
    // Not problem+json (a proxy's page): the status says enough.
  }
  const field = (name: string): string | undefined =>
    typeof problem[name] === "string" ? scrub(problem[name] as string, secrets) : undefined;
  const code = field("code") ?? `http_${status}`;
  const title = field("title");
  const detail = field("detail");
  return new KeyhavenError({
    message: `Keyhaven answered ${what} with ${status} ${code}${detail ?? title ? `: ${detail ?? title}` : ""}`,
    status,
    code,
    title,
    detail,
    type: field("type"),
  });
}

type Raw = Record<string, unknown>;

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" ? v : null);

/** The server's snake_case verify answer as a {@link VerifyResult}. */
export function toResult(raw: unknown): VerifyResult {
  if (raw === null || typeof raw !== "object" || typeof (raw as Raw).code !== "string") {
    throw new KeyhavenError({
      message: "Keyhaven's verify answer has no code",
      status: 200,
      code: "unreadable_answer",
    });
  }
  const r = raw as Raw;
  const owner = r.owner as Raw | null | undefined;
  const rotation = r.rotation as Raw | null | undefined;
  const limits = Array.isArray(r.ratelimits) ? (r.ratelimits as Raw[]) : [];
  return {
    valid: r.valid === true,
    code: r.code as VerifyCode,
    keyId: str(r.key_id),
    keyspaceId: str(r.keyspace_id),
    keyspace: str(r.keyspace),
    owner: owner ? { id: String(owner.id), externalId: str(owner.external_id) } : null,
    name: str(r.name),
    scopes: Array.isArray(r.scopes) ? (r.scopes as string[]) : null,
    meta: r.meta && typeof r.meta === "object" ? (r.meta as Record<string, unknown>) : null,
    expiresAt: str(r.expires_at),
    rotation: rotation
      ? { successorKeyId: String(rotation.successor_key_id), graceUntil: String(rotation.grace_until) }
      : null,
    ratelimits: limits.map(
      (l): VerifyRatelimit => ({
        name: String(l.name),
        scope: String(l.scope),
        limit: Number(l.limit),
        durationMs: Number(l.duration_ms),
        remaining: Number(l.remaining),
        resetAt: String(l.reset_at),
        retryAfterMs: num(l.retry_after_ms),
        exceeded: l.exceeded === true,
      }),
    ),
    remaining: num(r.remaining),
    missingPermissions: Array.isArray(r.missing_permissions)
      ? (r.missing_permissions as string[])
      : null,
    token: r.token === true,
    cached: false,
  };
}

const seg = encodeURIComponent;

/**
 * Whether a call that may have reached the server unanswered (a timeout, a reset) may be
 * sent again: anything but a POST the server would apply twice, one without an
 * `Idempotency-Key` (such as a new root key). Verifications are sent again (their use may
 * then be counted twice, the price of not failing a request over a blip).
 */
function mayResendAfterSending(method: string, path: string, idempotencyKey: string | undefined): boolean {
  if (method.toUpperCase() !== "POST" || idempotencyKey !== undefined) return true;
  const bare = path.split("?")[0];
  return bare === "/v1/keys/verify" || bare === "/v1/keys/verify/batch";
}

/** Whether `fetch` failed before any connection was made (so nothing was sent). */
function notConnected(e: unknown): boolean {
  const code = (e as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return (
    code === "ECONNREFUSED" ||
    code === "ENOTFOUND" ||
    code === "EAI_AGAIN" ||
    code === "EHOSTUNREACH" ||
    code === "UND_ERR_CONNECT_TIMEOUT"
  );
}

/** An idempotency key for a POST, so a retry after a network error cannot act twice. */
const once = (): string => crypto.randomUUID();

class Resource {
  constructor(protected readonly kh: Keyhaven) {}
}

/** `/v1/keyspaces` */
export class Keyspaces extends Resource {
  create(body: CreateKeyspace): Promise<Keyspace> {
    return this.kh.request("POST", "/v1/keyspaces", body, { idempotencyKey: once() });
  }
  get(id: string): Promise<Keyspace> {
    return this.kh.request("GET", `/v1/keyspaces/${seg(id)}`);
  }
  list(query: { limit?: number; cursor?: string } = {}): Promise<Page<Keyspace>> {
    return this.kh.request("GET", "/v1/keyspaces", undefined, { query });
  }
  update(id: string, patch: Partial<CreateKeyspace>): Promise<Keyspace> {
    return this.kh.request("PATCH", `/v1/keyspaces/${seg(id)}`, patch);
  }
  delete(id: string): Promise<void> {
    return this.kh.request("DELETE", `/v1/keyspaces/${seg(id)}`);
  }
}

/** `/v1/keys` */
export class Keys extends Resource {
  /** Makes a key; the answer's `key` is its plaintext, shown this once. */
  create(body: CreateKey): Promise<CreatedKey> {
    return this.kh.request("POST", "/v1/keys", body, { idempotencyKey: once() });
  }
  get(keyId: string): Promise<Key> {
    return this.kh.request("GET", `/v1/keys/${seg(keyId)}`);
  }
  list(query: ListKeys = {}): Promise<Page<Key>> {
    return this.kh.request("GET", "/v1/keys", undefined, { query: { ...query } });
  }
  update(keyId: string, patch: UpdateKey): Promise<Key> {
    return this.kh.request("PATCH", `/v1/keys/${seg(keyId)}`, patch);
  }
  revoke(keyId: string, body: { reason?: string } = {}): Promise<Key> {
    return this.kh.request("POST", `/v1/keys/${seg(keyId)}/revoke`, body, {
      idempotencyKey: once(),
    });
  }
  /** A new key with the same settings; the old one verifies until `grace_until`. */
  rotate(keyId: string, body: { grace_period_seconds?: number } = {}): Promise<CreatedKey> {
    return this.kh.request("POST", `/v1/keys/${seg(keyId)}/rotate`, body, {
      idempotencyKey: once(),
    });
  }
  delete(keyId: string): Promise<void> {
    return this.kh.request("DELETE", `/v1/keys/${seg(keyId)}`);
  }
}

/** `/v1/owners` */
export class Owners extends Resource {
  create(body: CreateOwner): Promise<Owner> {
    return this.kh.request("POST", "/v1/owners", body, { idempotencyKey: once() });
  }
  get(id: string): Promise<Owner> {
    return this.kh.request("GET", `/v1/owners/${seg(id)}`);
  }
  list(query: { external_id?: string; limit?: number; cursor?: string } = {}): Promise<Page<Owner>> {
    return this.kh.request("GET", "/v1/owners", undefined, { query });
  }
  update(id: string, patch: Partial<CreateOwner>): Promise<Owner> {
    return this.kh.request("PATCH", `/v1/owners/${seg(id)}`, patch);
  }
  delete(id: string): Promise<void> {
    return this.kh.request("DELETE", `/v1/owners/${seg(id)}`);
  }
}

/** Verifications over time, by outcome. */
export class Usage extends Resource {
  /** `GET /v1/keys/{key_id}/usage` */
  get(keyId: string, query: UsageQuery = {}): Promise<UsageSeries> {
    return this.kh.request("GET", `/v1/keys/${seg(keyId)}/usage`, undefined, { query: { ...query } });
  }
  /** `GET /v1/keyspaces/{id}/usage` */
  keyspace(id: string, query: UsageQuery = {}): Promise<UsageSeries> {
    return this.kh.request("GET", `/v1/keyspaces/${seg(id)}/usage`, undefined, { query: { ...query } });
  }
  /** `GET /v1/owners/{id}/usage` */
  owner(id: string, query: UsageQuery = {}): Promise<UsageSeries> {
    return this.kh.request("GET", `/v1/owners/${seg(id)}/usage`, undefined, { query: { ...query } });
  }
}

/** `/v1/audit-events` */
export class Audit extends Resource {
  list(query: AuditQuery = {}): Promise<Page<AuditEvent>> {
    return this.kh.request("GET", "/v1/audit-events", undefined, { query: { ...query } });
  }
}
