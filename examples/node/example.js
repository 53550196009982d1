// A simsearch client in Node.js, written from protos/simsearch/v1/simsearch.proto alone:
// health, create a collection, upsert, a near-duplicate query, and one error code.
//
//   cd examples/node && npm install
//   node example.js [HOST:PORT] [TOKEN_FILE]        (default 127.0.0.1:50051, no token)
//
// It prints one JSON line per step and exits 0 when every step gave what the .proto promises.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const address = process.argv[2] || "127.0.0.1:50051";
const token = process.argv[3] ? fs.readFileSync(process.argv[3], "utf8").trim() : null;
const protoRoot = path.resolve(__dirname, "..", "..", "protos");

// keepCase: field names as in the .proto; the optional scalars (proto3 `optional`) come back as
// their value, or undefined when unset (the loader also sets a synthetic oneof for each).
const definition = protoLoader.loadSync(path.join(protoRoot, "simsearch", "v1", "simsearch.proto"), {
  keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [protoRoot],
});
const simsearch = grpc.loadPackageDefinition(definition).simsearch.v1;

// The health service is standard (grpc.health.v1); its two messages are small enough to declare
// here, so the example needs no other .proto file.
const healthDef = protoLoader.fromJSON({
  nested: { grpc: { nested: { health: { nested: { v1: { nested: {
    HealthCheckRequest: { fields: { service: { type: "string", id: 1 } } },
    HealthCheckResponse: {
      fields: { status: { type: "ServingStatus", id: 1 } },
      nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
    },
    Health: { methods: { Check: { requestType: "HealthCheckRequest", responseType: "HealthCheckResponse" } } },
  } } } } } } },
}, { keepCase: true, enums: String, defaults: true });
const healthPkg = grpc.loadPackageDefinition(healthDef).grpc.health.v1;

const credentials = grpc.credentials.createInsecure();
const client = new simsearch.SimSearch(address, credentials);
const healthClient = new healthPkg.Health(address, credentials);

// grpc-js attaches call credentials only to TLS channels, so on a plaintext channel the bearer
// token goes into each call's metadata (as the .proto's Auth section says).
function metadata() {
  const md = new grpc.Metadata();
  if (token) md.set("authorization", "Bearer " + token);
  return md;
}

function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), { deadline: Date.now() + 30000 }, (err, response) =>
      err ? reject(err) : resolve(response));
  });
}

function report(step, ok, detail) {
  console.log(JSON.stringify({ step, ok, ...detail }));
  if (!ok) process.exitCode = 1;
}

async function main() {
  // 1. health: SERVING once the kernels are warm (NOT_SERVING before; poll until SERVING)
  let status = "UNKNOWN";
  for (let i = 0; i < 300 && status !== "SERVING"; i++) {
    status = await new Promise((resolve) => healthClient.Check({ service: "simsearch.v1.SimSearch" },
      { deadline: Date.now() + 5000 }, (err, r) => resolve(err ? "UNAVAILABLE" : r.status)));
    if (status !== "SERVING") await new Promise((r) => setTimeout(r, 200));
  }
  report("health", status === "SERVING", { status });

  // 2. create a collection (unset optional fields take the library defaults)
  const info = await call("CreateCollection", { name: "node_docs", config: { threshold: 0.5, ngram: 3 }, exist_ok: true });
  report("create", info.name === "node_docs" && info.config.ngram === 3 && info.config.num_perm === 128,
    { name: info.name, config: { ngram: info.config.ngram, num_perm: info.config.num_perm } });

  // 3. upsert: one atomic batch; metadata is a JSON object as text
  const text = "the quick brown fox jumps over the lazy dog";
  const up = await call("Upsert", { collection: "node_docs", documents: [
    { id: "a", text, metadata_json: JSON.stringify({ lang: "en" }) },
    { id: "b", text: text + " again and again" },
    { id: "c", text: "an entirely different sentence about something else" },
  ] });
  report("upsert", up.upserted === 3, { upserted: up.upserted, replaced: up.replaced });

  // 4. near-duplicates of a text: case and whitespace do not matter
  const q = await call("QueryNearDuplicates", { collection: "node_docs",
    texts: { values: ["The QUICK brown fox   jumps over the lazy dog"] }, exact: true });
  const hits = q.results[0].hits.map((h) => h.id);
  report("query", hits[0] === "a" && q.results[0].hits[0].jaccard === 1 && hits.includes("b") && !hits.includes("c"),
    { hits: q.results[0].hits.map((h) => ({ id: h.id, jaccard: Number(h.jaccard.toFixed(4)) })) });

  // 5. an error code: Get of an unknown id is NOT_FOUND, its class in the trailing metadata
  try {
    await call("Get", { collection: "node_docs", ids: ["nope"] });
    report("error", false, { error: "no error" });
  } catch (err) {
    const cls = err.metadata.get("simsearch-error-class")[0];
    report("error", err.code === grpc.status.NOT_FOUND && cls === "NotFoundError",
      { code: grpc.status[err.code], error_class: cls });
  }
  client.close();
  healthClient.close();
}

main().catch((err) => {
  console.error(`example.js: ${err.message}`);
  process.exit(1);
});
