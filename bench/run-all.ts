/**
 * `npm run bench`: every benchmark in turn, each in its own process so they do not disturb each
 * other. Each prints ratios against a baseline measured in the same run. The 5-minute soak is not
 * included (`npx tsx bench/soak.ts`).
 *   npm run bench                  # all
 *   npm run bench -- gateway jwt   # some
 */
import { spawnSync } from "node:child_process";

const ALL = [
  "gateway",
  "jwt",
  "keys",
  "sessions",
  "policy",
  "observability",
  "stdio",
  "probe",
  "timing",
  "identity",
  "authserver",
  "tracing",
  "unread-answers",
];
const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const unknown = wanted.filter((w) => !ALL.includes(w));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")}; choose from ${ALL.join(", ")}`);
  process.exit(2);
}
let failed = 0;
for (const name of wanted.length ? wanted : ALL) {
  console.log(`\n=== bench/${name}.ts ===`);
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", new URL(`./${name}.ts`, import.meta.url).pathname],
    {
      stdio: "inherit",
      timeout: 15 * 60_000,
    },
  );
  if (r.status !== 0) {
    failed++;
    console.error(`bench/${name}.ts exited with ${r.status ?? r.signal}`);
  }
}
process.exit(failed ? 1 : 0);
