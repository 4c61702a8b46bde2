/**
 * A server-sent events parser (the WHATWG "event stream interpretation"): bytes in,
 * events out. Lines end at CRLF, LF or CR (also when split across chunks); `field: value`
 * loses one leading space; `data` lines join with `\n`; `:` starts a comment; an event
 * is dispatched at a blank line.
 */
export interface SseEvent {
  /** The `event` field (`message` when absent). */
  event: string;
  data: string;
  /** The `id` field of this event, if it had one. */
  id: string | undefined;
}

/** Longest line kept before the stream is treated as broken. */
export const MAX_LINE = 64 * 1024;

export class SseParser {
  readonly #decoder = new TextDecoder();
  #line = "";
  #afterCR = false;
  #event = "";
  #data: string[] = [];
  #id: string | undefined;
  #fields = false;

  /** Parses one chunk; returns the events it completed. Throws on a line over 64 KiB. */
  push(chunk: Uint8Array): SseEvent[] {
    const text = this.#decoder.decode(chunk, { stream: true });
    const out: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 && this.#afterCR) {
        // The LF of a CRLF whose CR ended the previous line.
        this.#afterCR = false;
        start = i + 1;
        continue;
      }
      this.#afterCR = false;
      if (c === 10 || c === 13) {
        this.#afterCR = c === 13;
        this.#lineEnd(this.#line + text.slice(start, i), out);
        this.#line = "";
        start = i + 1;
      }
    }
    this.#line += text.slice(start);
    if (this.#line.length > MAX_LINE) throw new Error("an event stream line longer than 64 KiB");
    return out;
  }

  #lineEnd(line: string, out: SseEvent[]): void {
    if (line === "") {
      if (this.#fields) {
        out.push({ event: this.#event || "message", data: this.#data.join("\n"), id: this.#id });
      }
      this.#event = "";
      this.#data = [];
      this.#id = undefined;
      this.#fields = false;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.#event = value;
        break;
      case "data":
        this.#data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.#id = value;
        break;
      default:
        return;
    }
    this.#fields = true;
  }
}
