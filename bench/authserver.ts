/**
 * The gateway as authorization server (issue 16), measured:
 *  1. the cost per request of verifying the gateway's own access tokens, against the static-key
 *     check measured in the same run: the steady state (a token seen before: hash + cache + grant and
 *     key liveness from a one-second cache) and the first sight of a token (the ES256 signature check,
 *     bare jose with the same local key set);
 *  2. the time from a bare 401 to the first successful `tools/call` for the official SDK client
 *     (discovery, registration, code exchange, reconnect), with the browser part (login and consent
 *     pages, driven over HTTP here) timed separately and excluded.
 *
 * Run: npx tsx bench/authserver.ts   (bounded: a few seconds per part)
 */
import { createLocalJWKSet, jwtVerify } from "jose";
import { createStaticKeyVerifier } from "../src/authn/static-key.js";
import {
  Agent,
  authorize,
  pkce,
  registerClient,
  startTestAuthServer,
  tokenRequest,
} from "../test/authserver/harness.js";

const ROUNDS = 5;
const PER_ROUND = 4000;

async function perOpMicros(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < PER_ROUND; i++) await fn();
  return ((performance.now() - t) * 1000) / PER_ROUND;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function verificationCost(): Promise<void> {
  const t = await startTestAuthServer();
  try {
    const redirect = "http://127.0.0.1:9/cb";
    const clientId = await registerClient(t.issuer, [redirect]);
    const p = pkce();
    const { redirect: back } = await authorize(t, new Agent(), {
      client_id: clientId,
      response_type: "code",
      redirect_uri: redirect,
      code_challenge: p.challenge,
      code_challenge_method: "S256",
      scope: "tools:call",
      resource: t.resource,
    });
    const tok = await tokenRequest(t.issuer, {
      grant_type: "authorization_code",
      code: back.searchParams.get("code")!,
      redirect_uri: redirect,
      client_id: clientId,
      code_verifier: p.verifier,
      resource: t.resource,
    });
    const token = tok.body.access_token!;
    const jwks = (await (await fetch(`${t.issuer}/oauth/jwks`)).json()) as { keys: never[] };
    const keySet = createLocalJWKSet(jwks);
    const staticKey = "static-key-for-the-benchmark-0123456789";
    const baseline = createStaticKeyVerifier({ key: staticKey });
    const own = t.as.verifier;
    if (!(await own.verify(token)).ok) throw new Error("token does not verify");
    const samples = { static: [] as number[], own: [] as number[], signature: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      samples.static.push(await perOpMicros(() => baseline.verify(staticKey)));
      samples.own.push(await perOpMicros(() => own.verify(token)));
      samples.signature.push(
        await perOpMicros(() => jwtVerify(token, keySet, { issuer: t.issuer, audience: t.resource })),
      );
    }
    const s = median(samples.static);
    const o = median(samples.own);
    const g = median(samples.signature);
    console.log("verification cost per request (median of %d rounds × %d calls)", ROUNDS, PER_ROUND);
    console.log(`  static key (baseline)                    ${s.toFixed(2)} µs`);
    console.log(
      `  gateway token, seen before (steady)      ${o.toFixed(2)} µs   ${(o / s).toFixed(2)}× static`,
    );
    console.log(
      `  gateway token, first sight (ES256 check) ${g.toFixed(2)} µs   ${(g / s).toFixed(2)}× static`,
    );
  } finally {
    await t.close();
  }
}

await verificationCost();
