/**
 * JWT verification throughput: mcpgate's verifier vs bare jose `jwtVerify` in the same run, for
 * RS256 and ES256, uncached (cache off: every call checks the signature) and cached (the
 * verified-token cache answers repeats). Loopback JWKS server; bounded in time.
 *
 * Run: npx tsx bench/jwt.ts
 * Targets (issue 4): our uncached overhead over jose ≤ 10 %; cached ≥ 20× uncached.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism, loadavg } from "node:os";
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from "jose";
import { createJwtVerifier } from "../src/authn/jwt.js";

const ISSUER = "https://as.bench.example";
const AUDIENCE = "https://mcp.bench.example/mcp";
const PAIR_MS = 2_500;
const CACHED_MS = 1_000;

/** CPU time of this process (all threads: WebCrypto verifies on the libuv pool), in ms. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Run `a` and `b` in alternating batches for `totalMs` and compare the CPU time each side used.
 * CPU time, not wall time: on a shared, loaded machine wall time mostly measures waiting for a
 * core, while CPU time measures the work done. Alternating batches cancel drift (JIT, GC, thermal).
 */
async function paired(
  a: () => Promise<unknown>,
  b: () => Promise<unknown>,
  totalMs: number,
): Promise<{ aOps: number; bOps: number; ratio: number }> {
  for (let i = 0; i < 200; i++) {
    await a();
    await b();
  }
  const BATCH = 32;
  let ta = 0;
  let tb = 0;
  let n = 0;
  const end = performance.now() + totalMs;
  const run = async (f: () => Promise<unknown>) => {
    const t = cpuMs();
    for (let i = 0; i < BATCH; i++) await f();
    return cpuMs() - t;
  };
  let flip = false;
  while (performance.now() < end) {
    // Swap which side goes first each round, so neither always inherits the other's garbage.
    if (flip) {
      tb += await run(b);
      ta += await run(a);
    } else {
      ta += await run(a);
      tb += await run(b);
    }
    flip = !flip;
    n += BATCH;
  }
  // Calls per CPU-second for each side; the ratio of CPU per call is what "overhead" means.
  return { aOps: (n * 1000) / ta, bOps: (n * 1000) / tb, ratio: tb / ta };
}

async function main(): Promise<void> {
  const keys = {
    RS256: await generateKeyPair("RS256", { extractable: true }),
    ES256: await generateKeyPair("ES256", { extractable: true }),
  };
  const jwks = {
    keys: [
      { ...(await exportJWK(keys.RS256.publicKey)), kid: "rs", alg: "RS256", use: "sig" },
      { ...(await exportJWK(keys.ES256.publicKey)), kid: "es", alg: "ES256", use: "sig" },
    ],
  };
  const server = createServer((_req, res) =>
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(jwks)),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;

  const rows: string[] = [];
  let allOk = true;
  for (const alg of ["RS256", "ES256"] as const) {
    const token = await new SignJWT({ scope: "tools:call read", client_id: "bench" })
      .setProtectedHeader({ alg, kid: alg === "RS256" ? "rs" : "es", typ: "at+jwt" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject("user-1")
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(keys[alg].privateKey);

    const remote = createRemoteJWKSet(new URL(jwksUri));
    const joseOpts = {
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: [alg],
      requiredClaims: ["exp", "sub"],
    };
    const bare = () => jwtVerify(token, remote, joseOpts);
    const issuers = [{ issuer: ISSUER, jwksUri, algorithms: [alg] }];
    const uncached = createJwtVerifier({ publicUrl: AUDIENCE, issuers, cache: false });
    const cached = createJwtVerifier({ publicUrl: AUDIENCE, issuers });
    for (const v of [uncached, cached]) {
      const r = await v.verify(token);
      if (!r.ok) throw new Error(`bench token refused: ${r.reason}`);
    }

    const base = await paired(bare, () => uncached.verify(token), PAIR_MS);
    const fast = await paired(
      () => uncached.verify(token),
      () => cached.verify(token),
      CACHED_MS,
    );
    const joseOps = base.aOps;
    const oursOps = base.bOps;
    const cachedOps = fast.bOps;
    // CPU per call: ours/jose − 1 is the overhead; uncached/cached the speed-up.
    const overhead = (base.ratio - 1) * 100;
    const speedup = 1 / fast.ratio;
    allOk &&= overhead <= 10 && speedup >= 20;
    rows.push(
      `${alg}  jose ${joseOps.toFixed(0).padStart(7)}/s  mcpgate uncached ${oursOps.toFixed(0).padStart(7)}/s ` +
        `(overhead ${overhead.toFixed(1).padStart(5)} %, target ≤ 10)  cached ${cachedOps.toFixed(0).padStart(8)}/s ` +
        `(${speedup.toFixed(1)}× uncached, target ≥ 20)`,
    );
  }
  server.closeAllConnections();
  server.close();
  const load = `load ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} CPUs`;
  console.log(
    `JWT verifications per CPU-second (alternating batches, ${PAIR_MS} ms per pair), Node ${process.version}, ${load}`,
  );
  for (const r of rows) console.log(r);
  console.log(allOk ? "targets met" : "TARGETS MISSED");
}

await main();
