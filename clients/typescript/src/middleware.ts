/**
 * Express and Fastify guards that answer like Keyhaven's gateway (docs/gateway.md,
 * "Refusals"): the key from the configured header, `Authorization: Bearer` or
 * `X-API-Key` (never the query string), verified with the client (cached or not); on
 * success the caller's {@link Identity} on the request, otherwise problem+json:
 *
 * | status | code | headers |
 * |---|---|---|
 * | 401 | `missing_key` | `WWW-Authenticate: Bearer realm="api"` |
 * | 401 | `not_found`, `malformed`, `revoked`, `expired`, `disabled` | `WWW-Authenticate: Bearer realm="api", error="invalid_token"` |
 * | 403 | `insufficient_scopes` | |
 * | 429 | `rate_limited` | `Retry-After`, `RateLimit`, `RateLimit-Policy` |
 * | 429 | `usage_exceeded` | `RateLimit`, `RateLimit-Policy` with limits |
 * | 503 | `unavailable` (Keyhaven cannot answer; unless `failOpen`) | |
 *
 * Neither framework is imported: the guards use Node's own request and response.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import type { Keyhaven } from "./client.js";
import { KeyhavenError } from "./errors.js";
import type { NamedCost, VerifyRatelimit, VerifyResult } from "./types.js";

/** Who is calling: what the gateway tells the API behind it, and the rest of the answer. */
export interface Identity {
  keyId: string;
  keyspaceId: string;
  /** The keyspace's name. */
  keyspace: string | null;
  ownerId: string | null;
  /** The owner's id in your own database. */
  ownerExternalId: string | null;
  name: string | null;
  scopes: string[];
  meta: Record<string, unknown>;
  expiresAt: string | null;
  /** The rate limits this request was counted against, after it. */
  ratelimits: VerifyRatelimit[];
  /** Remaining quota uses; `null` without a quota. */
  remaining: number | null;
  /** Whether the answer came from the local cache. */
  cached: boolean;
}

declare global {
  // Express's types merge this into its `Request` (and nothing else reads it), so
  // `req.keyhaven` is typed without this package importing Express.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `keyhaven.express`: the caller, or `null` when let through by `failOpen`. */
      keyhaven?: Identity | null;
    }
  }
}

export interface GuardOptions {
  client: Keyhaven;
  /** Scopes the key must hold (403 `insufficient_scopes` otherwise). */
  scopes?: readonly string[];
  /** Units taken from the key's limits and quota (default 1). */
  cost?: number;
  /** Check only these named limits, each at its own cost. */
  ratelimits?: readonly NamedCost[];
  /** A header read before `Authorization: Bearer` and `X-API-Key`. */
  header?: string;
  /** The audience this API is, for signed tokens (a token for another is refused). */
  audience?: string;
  /**
   * Let requests through, without identity (`null`), when Keyhaven cannot be reached
   * (no answer, or a 5xx). Default: the client's `failOpen`, itself off (503). A 4xx
   * from Keyhaven (a bad root key) always answers 503.
   */
  failOpen?: boolean;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
}

/** What the guard decided. */
export type Decision =
  | { pass: true; identity: Identity | null; headers: Record<string, string> }
  | { pass: false; status: number; headers: Record<string, string>; problem: Problem };

type HeaderValue = string | string[] | undefined;

/** The key a request presents, from the same headers, in the same order, as the gateway. */
export function presentedKey(
  headers: Record<string, HeaderValue>,
  header?: string,
): string | undefined {
  if (header !== undefined) {
    // Present but blank is no key, as at the gateway: the other headers are not read.
    const own = first(headers[header.toLowerCase()]);
    if (own !== undefined) return own.trim() || undefined;
  }
  const authorization = first(headers.authorization);
  if (authorization !== undefined) {
    const space = authorization.indexOf(" ");
    if (space > 0 && authorization.slice(0, space).toLowerCase() === "bearer") {
      const token = authorization.slice(space + 1).trim();
      if (token !== "") return token;
    }
  }
  const apiKey = first(headers["x-api-key"])?.trim();
  return apiKey ? apiKey : undefined;
}

function first(v: HeaderValue): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

const TITLES: Record<string, string> = {
  NOT_FOUND: "The API key is not valid",
  MALFORMED: "The API key is not valid",
  EXPIRED: "The API key has expired",
  REVOKED: "The API key has been revoked",
  DISABLED: "The API key is disabled",
  INSUFFICIENT_SCOPES: "The API key lacks a required scope",
  FORBIDDEN_IP: "The API key may not be used from this address",
  INSUFFICIENT_PERMISSIONS: "The API key lacks a required permission",
  RATE_LIMITED: "Too many requests",
  USAGE_EXCEEDED: "The API key's usage quota is exhausted",
};

function problem(status: number, code: string, title: string, detail: string): Problem {
  return { type: `urn:keyhaven:problem:${code}`, title, status, code, detail };
}

/** Decides one request: the guard of both frameworks. */
export async function decide(
  options: GuardOptions,
  headers: Record<string, HeaderValue>,
  clientIp: string | undefined,
): Promise<Decision> {
  const key = presentedKey(headers, options.header);
  if (key === undefined) {
    return {
      pass: false,
      status: 401,
      headers: { "www-authenticate": 'Bearer realm="api"' },
      problem: problem(
        401,
        "missing_key",
        "An API key is required",
        "Send the API key in the Authorization header (Bearer) or X-API-Key.",
      ),
    };
  }
  let answer: VerifyResult;
  try {
    answer = await options.client.verify({
      key,
      scopes: options.scopes,
      cost: options.cost,
      ratelimits: options.ratelimits,
      clientIp: clientIp === undefined ? undefined : plainIp(clientIp),
      audience: options.audience,
    });
  } catch (e) {
    const failOpen = options.failOpen ?? options.client.failOpen;
    if (failOpen && e instanceof KeyhavenError && e.unavailable) {
      return { pass: true, identity: null, headers: {} };
    }
    return {
      pass: false,
      status: 503,
      headers: {},
      problem: problem(503, "unavailable", "Service Unavailable", "The key service cannot be reached."),
    };
  }
  const limitHeaders = ratelimitHeaders(answer.ratelimits);
  if (answer.valid && answer.code === "VALID" && answer.keyId !== null && answer.keyspaceId !== null) {
    return { pass: true, identity: identityOf(answer), headers: limitHeaders };
  }
  const code = answer.code;
  const status =
    code === "INSUFFICIENT_SCOPES" || code === "FORBIDDEN_IP" || code === "INSUFFICIENT_PERMISSIONS"
      ? 403
      : code === "RATE_LIMITED" || code === "USAGE_EXCEEDED" ? 429 : 401;
  const out: Record<string, string> = { ...limitHeaders };
  if (status === 401) out["www-authenticate"] = 'Bearer realm="api", error="invalid_token"';
  if (code === "RATE_LIMITED") out["retry-after"] = String(retryAfterSeconds(answer.ratelimits));
  return {
    pass: false,
    status,
    headers: out,
    problem: problem(
      status,
      String(code).toLowerCase(),
      TITLES[code] ?? "Refused",
      `The key was refused: ${code}.`,
    ),
  };
}

/** An IPv4 address as Node reports it on a dual-stack socket (`::ffff:1.2.3.4`), plain. */
function plainIp(ip: string): string {
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}

function identityOf(a: VerifyResult): Identity {
  return {
    keyId: a.keyId as string,
    keyspaceId: a.keyspaceId as string,
    keyspace: a.keyspace,
    ownerId: a.owner?.id ?? null,
    ownerExternalId: a.owner?.externalId ?? null,
    name: a.name,
    scopes: a.scopes ?? [],
    meta: a.meta ?? {},
    expiresAt: a.expiresAt,
    ratelimits: a.ratelimits,
    remaining: a.remaining,
    cached: a.cached,
  };
}

function msUntil(at: string, now: number): number {
  const t = Date.parse(at);
  return Number.isNaN(t) ? 0 : Math.max(0, t - now);
}

/**
 * `Retry-After` seconds for a rate-limited answer: the longest `retry_after_ms` of an
 * exceeded limit, else the time until it is whole again (at least 1).
 */
export function retryAfterSeconds(limits: readonly VerifyRatelimit[], now = Date.now()): number {
  let ms = 0;
  for (const l of limits) {
    if (!l.exceeded) continue;
    ms = Math.max(ms, l.retryAfterMs ?? msUntil(l.resetAt, now));
  }
  return Math.max(1, Math.ceil(ms / 1000));
}

/**
 * The IETF rate-limit headers, as the gateway sets them: `RateLimit-Policy` lists every
 * limit (`"name";q=<limit>;w=<window s>`), `RateLimit` the one closest to exhaustion
 * (`"name";r=<remaining>;t=<seconds to reset>`). None without limits.
 */
export function ratelimitHeaders(
  limits: readonly VerifyRatelimit[],
  now = Date.now(),
): Record<string, string> {
  if (limits.length === 0) return {};
  const tightness = (l: VerifyRatelimit): [number, number] => [
    l.exceeded ? 0 : 1,
    Math.floor((l.remaining * 1000) / Math.max(1, l.limit)),
  ];
  let tightest = limits[0] as VerifyRatelimit;
  for (const l of limits) {
    const [a, b] = tightness(l);
    const [c, d] = tightness(tightest);
    if (a < c || (a === c && b < d)) tightest = l;
  }
  const name = (s: string): string =>
    [...s].filter((c) => c >= " " && c <= "~").map((c) => (c === '"' || c === "\\" ? `\\${c}` : c)).join("");
  const policy = limits
    .map((l) => `"${name(l.name)}";q=${l.limit};w=${Math.max(1, Math.ceil(l.durationMs / 1000))}`)
    .join(", ");
  const current = `"${name(tightest.name)}";r=${tightest.remaining};t=${Math.ceil(msUntil(tightest.resetAt, now) / 1000)}`;
  return { "ratelimit-policy": policy, ratelimit: current };
}

function sendProblem(res: ServerResponse, d: Extract<Decision, { pass: false }>): void {
  const body = JSON.stringify(d.problem);
  res.statusCode = d.status;
  for (const [name, value] of Object.entries(d.headers)) res.setHeader(name, value);
  res.setHeader("content-type", "application/problem+json");
  res.setHeader("content-length", Buffer.byteLength(body));
  res.end(body);
}

/** An Express request: Node's, with `ip` and the identity the guard sets. */
export type ExpressRequest = IncomingMessage & { ip?: string; keyhaven?: Identity | null };
export type NextFunction = (error?: unknown) => void;

/**
 * Express middleware: `app.use(keyhaven.express({ client, scopes: ["orders:read"] }))`.
 * Sets `req.keyhaven` to the caller's {@link Identity} (`null` when let through by
 * `failOpen`), or answers the refusal itself.
 */
export function express(
  options: GuardOptions,
): (req: ExpressRequest, res: ServerResponse, next: NextFunction) => void {
  check(options);
  return (req, res, next) => {
    decide(options, req.headers, req.ip ?? req.socket?.remoteAddress).then(
      (d) => {
        if (!d.pass) return sendProblem(res, d);
        for (const [name, value] of Object.entries(d.headers)) res.setHeader(name, value);
        req.keyhaven = d.identity;
        next();
      },
      (e: unknown) => next(e),
    );
  };
}

/** The parts of Fastify's request and reply the guard uses. */
export interface FastifyRequestLike {
  headers: Record<string, HeaderValue>;
  ip?: string;
  keyhaven?: Identity | null;
  /** Fastify's route options; the guard reads `config.keyhaven` ({@link RouteGuard}). */
  routeOptions?: { config?: unknown };
}
export interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  type(contentType: string): FastifyReplyLike;
  send(payload: Buffer): unknown;
}

/** A route's own needs, in its `config.keyhaven`: `false` for a public route. */
export type RouteGuard =
  | false
  | { scopes?: readonly string[]; cost?: number; ratelimits?: readonly NamedCost[] };

/**
 * A Fastify `preHandler` hook: per route (`{ preHandler: keyhaven.fastify({ client }) }`)
 * or for all (`app.addHook("preHandler", keyhaven.fastify({ client }))`). Sets
 * `request.keyhaven`, or answers the refusal. A route's `config.keyhaven` (see
 * {@link RouteGuard}) overrides scopes, cost and limits, or (`false`) skips the check.
 */
export function fastify(
  options: GuardOptions,
): (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown> {
  check(options);
  return async (request, reply) => {
    const config = request.routeOptions?.config as { keyhaven?: RouteGuard } | undefined;
    const route = config?.keyhaven;
    if (route === false) return undefined;
    const d = await decide(route ? { ...options, ...route } : options, request.headers, request.ip);
    if (!d.pass) {
      reply.code(d.status);
      for (const [name, value] of Object.entries(d.headers)) reply.header(name, value);
      reply.type("application/problem+json");
      // Bytes, so that Fastify adds no charset to the content type.
      reply.send(Buffer.from(JSON.stringify(d.problem)));
      // An async hook that answered returns the reply: Fastify stops there.
      return reply;
    }
    for (const [name, value] of Object.entries(d.headers)) reply.header(name, value);
    request.keyhaven = d.identity;
    return undefined;
  };
}

/** The Fastify instance methods the plugin uses. */
export interface FastifyInstanceLike {
  decorateRequest(name: string, value: unknown): unknown;
  hasRequestDecorator?(name: string): boolean;
  // `any`: Fastify's own hook types are generic over its type providers.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addHook(name: "preHandler", hook: any): unknown;
}

/**
 * A Fastify plugin guarding every route of the instance it is registered on:
 * `await app.register(keyhaven.fastifyPlugin, { client })`. Not encapsulated (as with
 * `fastify-plugin`), so it guards the routes of the registering context; routes opt out
 * or ask more with `config: { keyhaven: … }`.
 */
export async function fastifyPlugin(
  instance: FastifyInstanceLike,
  options: GuardOptions,
): Promise<void> {
  if (!instance.hasRequestDecorator?.("keyhaven")) instance.decorateRequest("keyhaven", null);
  instance.addHook("preHandler", fastify(options));
}
Object.assign(fastifyPlugin, {
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "keyhaven",
});

function check(options: GuardOptions): void {
  if (options?.client === undefined || typeof options.client.verify !== "function") {
    throw new TypeError("keyhaven middleware: options.client must be a Keyhaven client");
  }
}
