import * as jose from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createJwtVerifier } from "../../src/authn/jwt.js";
import { type JwksServer, makeKey, mint, startJwksServer, type TestKey } from "./jwks-fixture.js";

// Pass-through spies on jose's decoders and verifier, so the test counts what the verifier asks
// jose to decode; every call still does what jose does.
vi.mock("jose", async (importOriginal) => {
  const real = await importOriginal<typeof import("jose")>();
  return {
    ...real,
    decodeJwt: vi.fn(real.decodeJwt),
    decodeProtectedHeader: vi.fn(real.decodeProtectedHeader),
    jwtVerify: vi.fn(real.jwtVerify),
  };
});

const ISSUER = "https://as.test.example";
const AUDIENCE = "https://mcp.test.example/mcp";
const nowSec = () => Math.floor(Date.now() / 1000);

let rsa: TestKey;
let server: JwksServer;

beforeAll(async () => {
  rsa = await makeKey("RS256", "rsa-1");
  server = await startJwksServer([rsa.jwk]);
});

afterAll(async () => {
  await server.stop();
});

beforeEach(() => {
  vi.mocked(jose.decodeJwt).mockClear();
  vi.mocked(jose.decodeProtectedHeader).mockClear();
  vi.mocked(jose.jwtVerify).mockClear();
});

describe("decoding a JWT on a verifier cache miss", () => {
  it("decodes the payload once for issuer selection and the header only inside jwtVerify", async () => {
    const verifier = createJwtVerifier({
      publicUrl: AUDIENCE,
      issuers: [{ issuer: ISSUER, jwksUri: server.url }],
    });
    const token = await mint(rsa, { iss: ISSUER, aud: AUDIENCE, sub: "user-42", exp: nowSec() + 600 });

    expect((await verifier.verify(token)).ok).toBe(true);
    expect(vi.mocked(jose.decodeJwt)).toHaveBeenCalledTimes(1);
    expect(vi.mocked(jose.jwtVerify)).toHaveBeenCalledTimes(1);
    // The cache binding's `kid` comes from jwtVerify's verified protectedHeader, not a third decode.
    expect(vi.mocked(jose.decodeProtectedHeader)).not.toHaveBeenCalled();
    expect(verifier.cache.size).toBe(1);

    // A hit decodes nothing at all.
    expect((await verifier.verify(token)).ok).toBe(true);
    expect(vi.mocked(jose.decodeJwt)).toHaveBeenCalledTimes(1);
    expect(vi.mocked(jose.jwtVerify)).toHaveBeenCalledTimes(1);
  });
});
