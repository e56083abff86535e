import type { LogStream } from '../../pipeline/types.ts';

/**
 * The fields of one json-file line. The scanner fills one reused object instead of allocating one per
 * line; the caller copies what it keeps.
 */
export interface LineFields {
  /** The `log` value, decoded, including its trailing `\n` when it has one (a partial has none). */
  log: string;
  stream: LogStream;
  /** RFC3339Nano, as written by the engine. */
  time: string;
  attrs: Record<string, string> | undefined;
}

export function newLineFields(): LineFields {
  return { log: '', stream: 'stdout', time: '', attrs: undefined };
}

/**
 * Parses one line of the json-file format (`{"log":…,"stream":…,"attrs":{…}?,"time":…}`) with
 * JSON.parse. A purpose-built scanner (indexOf over the fixed key order) was measured against it in
 * test/bench/logs.ts: equal on parsing alone, and about 10 % slower end to end, since its slices keep
 * the read chunk alive and make more garbage (figures in docs/json-file.md). Returns false for a line
 * that is not a json-file record (a torn write, corruption).
 */
export function parseLine(line: string, out: LineFields): boolean {
  let value: { log?: unknown; stream?: unknown; time?: unknown; attrs?: unknown };
  try {
    value = JSON.parse(line);
  } catch {
    return false;
  }
  if (typeof value !== 'object' || value === null) return false;
  if (typeof value.log !== 'string' || typeof value.time !== 'string') return false;
  out.log = value.log;
  out.stream = value.stream === 'stderr' ? 'stderr' : 'stdout';
  out.time = value.time;
  out.attrs = value.attrs === undefined ? undefined : toAttrs(value.attrs);
  return true;
}

/** `attrs` values as strings (the engine writes strings; anything else is kept as its JSON). */
function toAttrs(value: unknown): Record<string, string> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return out;
}

let cachedPrefix = '';
let cachedSecondsNs = 0n;
const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/**
 * RFC3339Nano → Unix nanoseconds, exactly. Lines of one second share their date prefix, so the
 * `Date.parse` of the prefix is cached and a line costs one BigInt addition. Returns undefined for a
 * malformed timestamp.
 */
export function parseTimeNano(time: string): bigint | undefined {
  // The engine writes UTC with a `Z` and trims trailing zeros from the fraction.
  if (time.length > 20 && time.charCodeAt(19) === 46 /* . */ && time.charCodeAt(time.length - 1) === 90) {
    const prefix = time.slice(0, 19);
    if (prefix !== cachedPrefix) {
      const ms = Date.parse(`${prefix}Z`);
      if (Number.isNaN(ms)) return parseTimeSlow(time);
      cachedPrefix = prefix;
      cachedSecondsNs = BigInt(ms) * 1_000_000n;
    }
    const digits = time.length - 21;
    const frac = Number(time.slice(20, -1));
    if (digits > 9 || !Number.isInteger(frac)) return parseTimeSlow(time);
    return cachedSecondsNs + BigInt(frac * 10 ** (9 - digits));
  }
  return parseTimeSlow(time);
}

function parseTimeSlow(time: string): bigint | undefined {
  const m = RFC3339.exec(time);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  const frac = m[2] ?? '';
  return BigInt(ms) * 1_000_000n + BigInt(frac.padEnd(9, '0') || '0');
}
