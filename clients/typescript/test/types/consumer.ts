// Compiled (never run) by `npm run typecheck`: the declarations as a TypeScript user of
// Express and Fastify meets them.
import express from "express";
import Fastify from "fastify";

import keyhaven, {
  type Identity,
  Keyhaven,
  KeyhavenError,
  type VerifyResult,
  display,
  generateKey,
  parseKey,
} from "keyhaven";

const kh = new Keyhaven({ baseUrl: "http://127.0.0.1:8080", rootKey: "k", cache: { coherenceMs: 1000 } });

async function verify(): Promise<boolean> {
  const answer: VerifyResult = await kh.verify({ key: "k", scopes: ["a"], cost: 2, clientIp: "::1" });
  const owner: string | undefined = answer.owner?.externalId ?? undefined;
  void owner;
  try {
    const ks = await kh.keyspaces.create({ name: "n", prefix: "p" });
    const created = await kh.keys.create({ keyspace_id: ks.id, scopes: ["a"] });
    const shown: string | null = display(created.key);
    const id: string = parseKey(generateKey("acme")).keyId;
    void shown;
    void id;
    await kh.keys.revoke(created.key_id, { reason: "leaked" });
    const page = await kh.keys.list({ keyspace_id: ks.id, limit: 10 });
    void page.next_cursor;
    await kh.request("GET", "/v1/webhooks");
  } catch (e) {
    if (e instanceof KeyhavenError) return e.status === 404 && e.code === "not_found";
  }
  await kh.close();
  return answer.valid;
}
void verify;

const app = express();
app.use(keyhaven.express({ client: kh, scopes: ["orders:read"] }));
app.get("/", (req, res) => {
  const who: Identity | null | undefined = req.keyhaven;
  res.json({ keyId: who?.keyId });
});

const f = Fastify();
f.addHook("preHandler", keyhaven.fastify({ client: kh }));
f.get("/x", { preHandler: keyhaven.fastify({ client: kh, scopes: ["x"] }) }, async () => ({}));
f.register(keyhaven.fastifyPlugin, { client: kh, failOpen: false });
f.get("/public", { config: { keyhaven: false } }, async () => ({}));
