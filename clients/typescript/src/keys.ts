/**
 * The Keyhaven key format: `<prefix>_<key id>_<secret><checksum>`, the same rules as the
 * server's `crates/core/src/format.rs`:
 *
 * - prefix: 1–20 characters, `[a-z][a-z0-9_]*` (a key is parsed from the right, so a
 *   prefix may itself contain `_`: the `_` before the secret is the 37th character from
 *   the end, the 51st for a long secret);
 * - key id: 12 base58 characters (Bitcoin alphabet), public;
 * - secret: 30 base58 characters from the CSPRNG (~175 bits), or 44 (~257 bits) for
 *   keyspaces with `secret_bytes: 32`;
 * - checksum: CRC-32 (IEEE) of the UTF-8 bytes of everything before it, as a big-endian
 *   base58 number of exactly 6 digits, left-padded with `1`.
 *
 * Checks run in the server's order (length, characters and separators, prefix,
 * checksum), so a refused key names the same failed check here as in `keyhaven inspect`.
 */
import { randomBytes } from "node:crypto";

/** The Bitcoin base58 alphabet. */
export const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
export const KEY_ID_LENGTH = 12;
export const SECRET_LENGTH = 30;
export const LONG_SECRET_LENGTH = 44;
export const CHECKSUM_LENGTH = 6;
export const MAX_PREFIX_LENGTH = 20;
/** Everything after the prefix: `_`, key id, `_`, secret, checksum. */
const TAIL_LENGTH = 1 + KEY_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH;
const LONG_TAIL_LENGTH = TAIL_LENGTH - SECRET_LENGTH + LONG_SECRET_LENGTH;
export const MIN_KEY_LENGTH = 1 + TAIL_LENGTH;
export const MAX_KEY_LENGTH = MAX_PREFIX_LENGTH + LONG_TAIL_LENGTH;

/**
 * Everything after the prefix: long when the `_` before a long secret is there and the
 * one before a standard secret is not (else standard, checked as such).
 */
function tailLength(key: string): number {
  const len = key.length;
  const standardSep = len - (SECRET_LENGTH + CHECKSUM_LENGTH) - 1;
  const longSep = len - (LONG_SECRET_LENGTH + CHECKSUM_LENGTH) - 1;
  if (key.charCodeAt(standardSep) !== 0x5f && len > LONG_TAIL_LENGTH && key.charCodeAt(longSep) === 0x5f) {
    return LONG_TAIL_LENGTH;
  }
  return TAIL_LENGTH;
}

/** Which check a string failed: the same names as the server's and the test vectors'. */
export type KeyCheck = "length" | "character" | "separator" | "prefix" | "checksum";

/**
 * A string that is not a well-formed key. The message names the failed check and a
 * position, never the string itself.
 */
export class KeyFormatError extends Error {
  readonly check: KeyCheck;
  /** Where the check failed, for `character` and `separator`. */
  readonly position: number | undefined;

  constructor(check: KeyCheck, message: string, position?: number) {
    super(message);
    this.name = "KeyFormatError";
    this.check = check;
    this.position = position;
  }
}

/** A key split into its parts. `secret` is not enumerable: it stays out of logs and JSON. */
export interface ParsedKey {
  readonly prefix: string;
  readonly keyId: string;
  readonly secret: string;
  readonly checksum: string;
}

const DIGIT_VALUE: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) t[ALPHABET.charCodeAt(i)] = i;
  return t;
})();

function isBase58(c: number): boolean {
  return c < 128 && (DIGIT_VALUE[c] ?? -1) >= 0;
}

function isLower(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isKeyChar(c: number): boolean {
  return isLower(c) || isDigit(c) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
}

const CRC_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32/IEEE (as zlib and `crc32fast` compute it) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The 6-character checksum of `body` (everything before the checksum). */
export function checksum(body: string): string {
  let n = crc32(new TextEncoder().encode(body));
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 58] + out;
    n = Math.floor(n / 58);
  }
  return out;
}

/** Why `prefix` is not a valid key prefix, or `undefined` when it is. */
function prefixProblem(prefix: string): string | undefined {
  if (prefix.length === 0) return "prefix is empty";
  if (!isLower(prefix.charCodeAt(0))) return "prefix must start with a lowercase letter a-z";
  for (let i = 1; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i);
    if (!(isLower(c) || isDigit(c) || c === 0x5f)) {
      return `prefix may contain only lowercase letters, digits and '_' (not at position ${i})`;
    }
  }
  if (prefix.length > MAX_PREFIX_LENGTH) {
    return `prefix is ${prefix.length} characters long; at most ${MAX_PREFIX_LENGTH} are allowed`;
  }
  return undefined;
}

/** Whether `prefix` may be a keyspace's key prefix: `[a-z][a-z0-9_]*`, 1–20 characters. */
export function prefixValid(prefix: string): boolean {
  return typeof prefix === "string" && prefixProblem(prefix) === undefined;
}

/**
 * `length` characters drawn uniformly from the base58 alphabet, by rejection sampling on
 * CSPRNG bytes (a byte below 232 = 4 × 58 is kept, as `byte % 58`; never a biased modulo).
 */
function randomBase58(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < 232) {
        out += ALPHABET[b % 58];
        if (out.length === length) break;
      }
    }
  }
  return out;
}

/**
 * A new key under `prefix`: 12-character key id and a secret from the CSPRNG, 30
 * characters (`secretBytes` 22, the default) or 44 (`secretBytes` 32).
 */
export function generateKey(prefix: string, options: { secretBytes?: 22 | 32 } = {}): string {
  const problem = typeof prefix === "string" ? prefixProblem(prefix) : "prefix is not a string";
  if (problem !== undefined) throw new KeyFormatError("prefix", problem);
  const bytes = options.secretBytes ?? 22;
  if (bytes !== 22 && bytes !== 32) throw new RangeError("secretBytes is 22 or 32");
  const secretLength = bytes === 32 ? LONG_SECRET_LENGTH : SECRET_LENGTH;
  const body = `${prefix}_${randomBase58(KEY_ID_LENGTH)}_${randomBase58(secretLength)}`;
  return body + checksum(body);
}

/** Splits `key` after checking length, characters, separators and prefix (not the checksum). */
function split(key: unknown): { prefix: string; keyId: string; secret: string; checksum: string } {
  if (typeof key !== "string") throw new KeyFormatError("length", "a key is a string");
  const len = key.length;
  if (len < MIN_KEY_LENGTH || len > MAX_KEY_LENGTH) {
    throw new KeyFormatError(
      "length",
      `a key is ${MIN_KEY_LENGTH} to ${MAX_KEY_LENGTH} characters long; this one has ${len}`,
    );
  }
  for (let i = 0; i < len; i++) {
    if (!isKeyChar(key.charCodeAt(i))) {
      throw new KeyFormatError("character", `character at position ${i} is not allowed there`, i);
    }
  }
  const prefixLength = len - tailLength(key);
  const secretSeparator = prefixLength + 1 + KEY_ID_LENGTH;
  for (const position of [prefixLength, secretSeparator]) {
    if (key.charCodeAt(position) !== 0x5f) {
      throw new KeyFormatError("separator", `expected '_' at position ${position}`, position);
    }
  }
  for (let i = prefixLength + 1; i < len; i++) {
    if (i !== secretSeparator && !isBase58(key.charCodeAt(i))) {
      throw new KeyFormatError("character", `character at position ${i} is not allowed there`, i);
    }
  }
  const prefix = key.slice(0, prefixLength);
  const problem = prefixProblem(prefix);
  if (problem !== undefined) throw new KeyFormatError("prefix", `invalid prefix: ${problem}`);
  return {
    prefix,
    keyId: key.slice(prefixLength + 1, secretSeparator),
    secret: key.slice(secretSeparator + 1, len - CHECKSUM_LENGTH),
    checksum: key.slice(len - CHECKSUM_LENGTH),
  };
}

/**
 * Parses `key`, checking length, characters, separators, prefix and checksum in that
 * order. Throws a {@link KeyFormatError} naming the failed check.
 */
export function parseKey(key: string): ParsedKey {
  const parts = split(key);
  if (checksum(key.slice(0, key.length - CHECKSUM_LENGTH)) !== parts.checksum) {
    throw new KeyFormatError(
      "checksum",
      "checksum does not match: the key was mistyped or is not a real key",
    );
  }
  const parsed = { prefix: parts.prefix, keyId: parts.keyId, checksum: parts.checksum };
  Object.defineProperty(parsed, "secret", { value: parts.secret, enumerable: false });
  return Object.freeze(parsed) as ParsedKey;
}

/** Whether `key` is a well-formed key whose checksum matches (no server asked). */
export function checksumValid(key: string): boolean {
  try {
    parseKey(key);
    return true;
  } catch {
    return false;
  }
}

/** The public key id of a well-formed key, or `null`. */
export function keyId(key: string): string | null {
  try {
    return parseKey(key).keyId;
  } catch {
    return null;
  }
}

/**
 * The form that identifies a key without revealing it, as the server shows it in a
 * key's `start`: `acme_live_7Gx9QbWkP2mZ_…aB3c` (prefix, key id, the checksum's last four
 * characters). `null` for a string that is not a well-formed key.
 */
export function display(key: string): string | null {
  try {
    const p = parseKey(key);
    return `${p.prefix}_${p.keyId}_\u2026${p.checksum.slice(CHECKSUM_LENGTH - 4)}`;
  } catch {
    return null;
  }
}
