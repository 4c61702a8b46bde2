/**
 * Follows the server's change stream (`GET /v1/changes`, server-sent events) for a
 * {@link VerifyCache}, as the server's own proxy node does
 * (`crates/server/src/gateway/follow.rs`):
 *
 * - `key` drops that key's answers (`data: {"key_id": …}`; unreadable data drops all);
 *   `all`, `reset` and any unknown event drop every answer;
 * - only `heartbeat` and `reset` tell the cache the stream vouches for everything so far
 *   (the cache is trusted within half of `coherenceMs` of that);
 * - a stream that ends, breaks, answers non-2xx or sends not one byte for twice
 *   `coherenceMs` is dropped (the cache stops being trusted at once) and reopened with
 *   `Last-Event-ID`, backing off from 100 ms to 2 s.
 */
import type { VerifyCache } from "./cache.js";
import { KeyhavenError } from "./errors.js";
import { SseParser, type SseEvent } from "./sse.js";

export interface FollowerOptions {
  /** `${baseUrl}/v1/changes`. */
  url: string;
  /** The request headers (authorization included); called on each connection. */
  headers: () => Record<string, string>;
  cache: VerifyCache;
  fetch: typeof fetch;
  /** Told why a connection was lost (never holds a secret). */
  onError?: ((error: KeyhavenError) => void) | undefined;
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 2_000;

export class ChangeFollower {
  readonly #options: FollowerOptions;
  #running: Promise<void> | undefined;
  #abort: AbortController | undefined;
  #closed = false;
  #wake: (() => void) | undefined;
  #cursor: string | undefined;
  #connections = 0;

  constructor(options: FollowerOptions) {
    this.#options = options;
  }

  /** The id of the last event processed: where a reconnection resumes. */
  get cursor(): string | undefined {
    return this.#cursor;
  }

  /** How many times the stream was opened (answered 2xx). */
  get connections(): number {
    return this.#connections;
  }

  /** Starts following (once; a closed follower stays closed). */
  start(): void {
    if (this.#running !== undefined || this.#closed) return;
    this.#running = this.#loop();
  }

  /** Stops following and waits until the connection is closed. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort?.abort();
    this.#wake?.();
    await this.#running;
    this.#options.cache.forget();
  }

  async #loop(): Promise<void> {
    let retry = FIRST_RETRY_MS;
    while (!this.#closed) {
      let spoke = false;
      try {
        spoke = await this.#once();
      } catch (e) {
        if (this.#closed) break;
        this.#options.onError?.(
          e instanceof KeyhavenError
            ? e
            : new KeyhavenError({
                message: `the change stream broke: ${reason(e)}`,
                code: "stream_broken",
              }),
        );
      }
      this.#options.cache.forget();
      if (this.#closed) break;
      if (spoke) retry = FIRST_RETRY_MS;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, retry);
        timer.unref?.();
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
      retry = Math.min(retry * 2, MAX_RETRY_MS);
    }
  }

  /** One connection, until it ends; whether any event arrived on it. */
  async #once(): Promise<boolean> {
    const { url, cache } = this.#options;
    const abort = new AbortController();
    this.#abort = abort;
    const silence = 2 * cache.coherenceMs;
    let silent = false;
    const watchdog = setTimeout(() => {
      silent = true;
      abort.abort();
    }, silence);
    watchdog.unref?.();
    let spoke = false;
    try {
      const headers: Record<string, string> = {
        ...this.#options.headers(),
        accept: "text/event-stream",
      };
      if (this.#cursor !== undefined) headers["last-event-id"] = this.#cursor;
      const response = await this.#options.fetch(url, { headers, signal: abort.signal });
      if (!response.ok) {
        await response.body?.cancel().catch(() => undefined);
        // A cursor the server refuses (another server's shape): start afresh.
        if (response.status === 400) this.#cursor = undefined;
        throw new KeyhavenError({
          message: `the change stream answered ${response.status}`,
          status: response.status,
          code: "stream_refused",
        });
      }
      if (response.body === null) return false;
      this.#connections++;
      const parser = new SseParser();
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        watchdog.refresh();
        for (const event of parser.push(value)) {
          this.#apply(event);
          spoke = true;
        }
      }
      return spoke;
    } catch (e) {
      if (silent && !this.#closed) {
        throw new KeyhavenError({
          message: `the change stream went silent for ${silence} ms`,
          code: "stream_silent",
        });
      }
      throw e;
    } finally {
      clearTimeout(watchdog);
      abort.abort();
    }
  }

  #apply(event: SseEvent): void {
    const cache = this.#options.cache;
    switch (event.event) {
      case "key": {
        const keyId = keyIdOf(event.data);
        if (keyId === undefined) cache.invalidateAll();
        else cache.invalidateKey(keyId);
        break;
      }
      case "heartbeat":
        break;
      default:
        // `all`, `reset`, and anything this client does not know.
        cache.invalidateAll();
    }
    if (event.event === "heartbeat" || event.event === "reset") cache.heard();
    if (event.id !== undefined) this.#cursor = event.id;
  }
}

function keyIdOf(data: string): string | undefined {
  try {
    const value: unknown = JSON.parse(data);
    if (value !== null && typeof value === "object" && "key_id" in value) {
      const id = (value as { key_id: unknown }).key_id;
      if (typeof id === "string") return id;
    }
  } catch {
    // Unreadable: the caller drops everything.
  }
  return undefined;
}

/** A transport error's reason, without anything from the request. */
export function reason(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown } } | undefined)?.cause;
  if (cause !== undefined && typeof cause?.code === "string") return cause.code;
  const code = (e as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") return code;
  if (e instanceof Error && e.name !== "Error") return e.name;
  return "network error";
}
