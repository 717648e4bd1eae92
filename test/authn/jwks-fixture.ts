import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

/** A signing key pair with its public JWK (kid and alg set). */
export interface TestKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

export async function makeKey(alg: "RS256" | "ES256" | "PS256" | "EdDSA", kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicKey, jwk };
}

/** A JWKS server on 127.0.0.1:0 that counts hits and can be emptied, broken or stopped. */
export interface JwksServer {
  url: string;
  origin: string;
  hits: number;
  keys: JWK[];
  /** When set, answer with this status instead of the JWKS. */
  failWith?: number;
  /** Extra JSON documents served at given paths (e.g. issuer metadata). */
  docs: Map<string, unknown>;
  /** Paths requested, in order. */
  paths: string[];
  stop(): Promise<void>;
}

export async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state: JwksServer = {
    url: "",
    origin: "",
    hits: 0,
    keys,
    docs: new Map(),
    paths: [],
    stop: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    state.paths.push(path);
    if (path === "/jwks") {
      state.hits++;
      if (state.failWith) {
        res.writeHead(state.failWith).end("down");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: state.keys }));
      return;
    }
    const doc = state.docs.get(path);
    if (doc !== undefined) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(doc));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  state.origin = `http://127.0.0.1:${port}`;
  state.url = `${state.origin}/jwks`;
  state.stop = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

/** Sign a JWT with full control over header and claims (the attack set needs odd ones). */
export async function mint(
  key: TestKey,
  claims: JWTPayload,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "at+jwt", ...header })
    .sign(key.privateKey);
}

/** A port that nothing listens on (bound, then released). */
export async function deadUrl(path = "/jwks"): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}${path}`;
}
