import assert from "node:assert/strict";
import { test } from "node:test";

import { SseParser } from "../dist/sse.js";

const enc = (s) => new TextEncoder().encode(s);

test("events end at a blank line; fields lose one leading space", () => {
  const p = new SseParser();
  assert.deepEqual(p.push(enc("id: a-1\nevent: key\n")), []);
  assert.deepEqual(p.push(enc('data: {"key_id":"x"}\n\nid:a-2\nevent:heartbeat\ndata:{}\n\n')), [
    { id: "a-1", event: "key", data: '{"key_id":"x"}' },
    { id: "a-2", event: "heartbeat", data: "{}" },
  ]);
});

test("CRLF, CR, chunks split anywhere, comments and multi-line data", () => {
  const text = ": hello\r\nid: 1\r\nevent: all\r\ndata: a\rdata: b\r\n\r\ndata: x\n\n";
  const expected = [
    { id: "1", event: "all", data: "a\nb" },
    { id: undefined, event: "message", data: "x" },
  ];
  for (let size = 1; size <= text.length; size++) {
    const p = new SseParser();
    const got = [];
    const bytes = enc(text);
    for (let i = 0; i < bytes.length; i += size) got.push(...p.push(bytes.slice(i, i + size)));
    assert.deepEqual(got, expected, `chunks of ${size}`);
  }
});

test("a multi-byte character split across chunks survives", () => {
  const p = new SseParser();
  const bytes = enc("data: \u00fc\n\n");
  assert.deepEqual(p.push(bytes.slice(0, 7)), []);
  assert.deepEqual(p.push(bytes.slice(7)), [{ id: undefined, event: "message", data: "\u00fc" }]);
});

test("a line over 64 KiB breaks the stream", () => {
  const p = new SseParser();
  assert.throws(() => p.push(enc("data: " + "x".repeat(70 * 1024))));
});
