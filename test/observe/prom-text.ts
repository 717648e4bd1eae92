/**
 * A small strict parser of the Prometheus text exposition format (0.0.4), for tests: every line is
 * a `# HELP`, a `# TYPE`, or a sample of a family whose TYPE came first; label values are quoted with
 * `\\`, `\"` and `\n` escapes; values are floats, NaN or ±Inf (any case, as Go parses them). Anything else throws.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

// Prometheus reads values with Go's strconv.ParseFloat, which takes NaN and Inf in any case
// (prom-client writes "Nan" for an empty event-loop-lag sample).
function parseValue(v: string, line: number): number {
  if (/^nan$/i.test(v)) return Number.NaN;
  if (/^\+?inf(inity)?$/i.test(v)) return Number.POSITIVE_INFINITY;
  if (/^-inf(inity)?$/i.test(v)) return Number.NEGATIVE_INFINITY;
  if (!/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`line ${line}: bad value "${v}"`);
  return Number(v);
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === "histogram" || t === "summary") return base;
    }
  }
  return undefined;
}

export function parsePrometheusText(text: string): Sample[] {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  lines.forEach((line, i) => {
    const n = i + 1;
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = new RegExp(`^# (HELP|TYPE) (${NAME})(?: (.*))?$`).exec(line);
      if (!m) throw new Error(`line ${n}: bad comment "${line}"`);
      if (m[1] === "TYPE") {
        if (!TYPES.has(m[3] ?? "")) throw new Error(`line ${n}: bad type "${m[3]}"`);
        if (types.has(m[2]!)) throw new Error(`line ${n}: second TYPE for ${m[2]}`);
        types.set(m[2]!, m[3]!);
      }
      return;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`line ${n}: not a sample "${line}"`);
    const name = m[1]!;
    if (!familyOf(name, types)) throw new Error(`line ${n}: sample ${name} before its TYPE`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? "";
    while (rest !== "") {
      const l = LABEL.exec(rest);
      if (!l) throw new Error(`line ${n}: bad labels "${m[2]}"`);
      if (l[1]! in labels) throw new Error(`line ${n}: duplicate label ${l[1]}`);
      labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_s, c: string) => (c === "n" ? "\n" : c));
      rest = rest.slice(l[0].length);
    }
    samples.push({ name, labels, value: parseValue(m[3]!, n) });
  });
  return samples;
}

/** Sum of the samples named `name` whose labels include `match`. */
export function metricValue(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
