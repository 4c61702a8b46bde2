/**
 * A failed call to Keyhaven: an HTTP answer other than 2xx (its problem+json `code`,
 * `title` and `detail`), or no answer at all (`status` undefined, `code` `unreachable` or
 * `timeout`). Its message, stack and inspect output never hold a key or the root key:
 * it is built from the server's problem fields with every secret of the call scrubbed,
 * and carries no request, response or underlying error object.
 */
export class KeyhavenError extends Error {
  /** The HTTP status, or `undefined` when no answer came. */
  readonly status: number | undefined;
  /** The problem's stable `code` (`not_found`, `validation_failed`, …), or `unreachable`/`timeout`. */
  readonly code: string;
  readonly title: string | undefined;
  readonly detail: string | undefined;
  /** The problem's `type` URI. */
  readonly type: string | undefined;

  constructor(fields: {
    message: string;
    status?: number | undefined;
    code: string;
    title?: string | undefined;
    detail?: string | undefined;
    type?: string | undefined;
  }) {
    super(fields.message);
    this.name = "KeyhavenError";
    this.status = fields.status;
    this.code = fields.code;
    this.title = fields.title;
    this.detail = fields.detail;
    this.type = fields.type;
  }

  /**
   * Whether Keyhaven could not answer: no answer at all, or a 5xx. (A 4xx means it
   * answered, and refused: a bad root key, a missing scope, a bad request.)
   */
  get unavailable(): boolean {
    return this.status === undefined || this.status >= 500;
  }
}

/** `text` with every non-empty secret replaced by `<redacted>`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length > 0 && out.includes(s)) out = out.split(s).join("<redacted>");
  }
  return out;
}
