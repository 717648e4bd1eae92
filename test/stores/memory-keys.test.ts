import { createMemoryKeyStore } from "../../src/stores/memory-keys.js";
import { describeKeyStoreContract } from "./key-store-contract.js";

describeKeyStoreContract("memory", async () => {
  const store = createMemoryKeyStore();
  await store.init();
  return { store, dispose: () => store.close() };
});
