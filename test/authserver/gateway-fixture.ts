import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { issueApiKey } from "../../src/authn/key-lifecycle.js";
import { openKeyStore } from "../../src/stores/open-key-store.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { type RecordingUpstream, startRecordingUpstream } from "../helpers/upstream.js";

/** A key-only deployment made reachable to OAuth clients: the real gateway with `authServer.login.apiKey`. */
export interface KeyLoginGateway {
  gw: TestGateway;
  upstream: RecordingUpstream;
  /** A temporary folder (its SQLite key store is `mcpgate.db`), removed by close(). */
  dir: string;
  /** One stored key per name asked for, scopes tools:call. */
  keys: Array<{ key: string; id: string }>;
  close(): Promise<void>;
}

/**
 * Start a recording upstream and the gateway in front of it: stored keys in SQLite, the gateway's own
 * authorization server with API-key login, a policy needing `admin` for delete_* and `tools:call` for the rest.
 *
 * @example const { gw, keys } = await startKeyLoginGateway(["person", "other"]);
 */
export async function startKeyLoginGateway(names: string[] = ["person"]): Promise<KeyLoginGateway> {
  const dir = mkdtempSync(join(tmpdir(), "mcpgate-as-gw-"));
  const store = `sqlite:${join(dir, "mcpgate.db")}`;
  const keyStore = await openKeyStore(store);
  const keys: Array<{ key: string; id: string }> = [];
  for (const name of names) {
    const { key, record } = await issueApiKey(keyStore, { name, scopes: ["tools:call"] });
    keys.push({ key, id: record.id });
  }
  await keyStore.close();
  const upstream = await startRecordingUpstream();
  const gw = await startTestGateway({
    upstream: { url: upstream.url },
    auth: { apiKeys: { store } },
    authServer: { login: { apiKey: {} } },
    policy: {
      default: "deny",
      tools: [
        { match: "delete_*", scopes: ["admin"] },
        { match: "*", scopes: ["tools:call"] },
      ],
    },
  });
  return {
    gw,
    upstream,
    dir,
    keys,
    async close() {
      await gw.close();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
