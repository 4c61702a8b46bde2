/**
 * `keyhaven`: the Keyhaven client for Node.js (>= 18), with no runtime dependencies.
 *
 * ```js
 * import keyhaven, { Keyhaven } from "keyhaven";
 * const kh = new Keyhaven({ baseUrl: "http://127.0.0.1:8080", rootKey, cache: true });
 * app.use(keyhaven.express({ client: kh, scopes: ["orders:read"] }));
 * ```
 */
import { Keyhaven } from "./client.js";
import { KeyhavenError } from "./errors.js";
import { checksumValid, display, generateKey, KeyFormatError, keyId, parseKey } from "./keys.js";
import { express, fastify, fastifyPlugin } from "./middleware.js";
import { scopesGrant } from "./scopes.js";
import { VERSION } from "./version.js";

export { Keyhaven, Keyspaces, Keys, Owners, Usage, Audit } from "./client.js";
export type { KeyhavenOptions, RequestOptions } from "./client.js";
export type { CacheOptions } from "./cache.js";
export { KeyhavenError } from "./errors.js";
export {
  ALPHABET,
  checksum,
  checksumValid,
  crc32,
  display,
  generateKey,
  KeyFormatError,
  keyId,
  parseKey,
  prefixValid,
} from "./keys.js";
export type { KeyCheck, ParsedKey } from "./keys.js";
export {
  decide,
  express,
  fastify,
  fastifyPlugin,
  presentedKey,
  ratelimitHeaders,
  retryAfterSeconds,
} from "./middleware.js";
export type {
  Decision,
  ExpressRequest,
  FastifyInstanceLike,
  FastifyReplyLike,
  FastifyRequestLike,
  GuardOptions,
  Identity,
  NextFunction,
  Problem,
  RouteGuard,
} from "./middleware.js";
export type * from "./resources.js";
export { scopesGrant, scopesCover } from "./scopes.js";
export type * from "./types.js";
export { VERSION } from "./version.js";

/** Everything, as one object: `keyhaven.express(...)`, `keyhaven.generateKey(...)`. */
const keyhaven = {
  Keyhaven,
  KeyhavenError,
  KeyFormatError,
  express,
  fastify,
  fastifyPlugin,
  generateKey,
  parseKey,
  checksumValid,
  keyId,
  display,
  scopesGrant,
  VERSION,
};
export default keyhaven;
