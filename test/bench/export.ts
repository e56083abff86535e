/**
 * `npm run bench:export`: one section per exporter, each in its own file and processes:
 *   otlp: test/bench/export-otlp.ts  json_file → enrich → otlp_http (protobuf + gzip) → blackhole sink
 *   loki: test/bench/export-loki.ts  json_file → enrich → loki (protobuf + snappy) → blackhole sink
 * Each prints lines per CPU-second of the agent, bytes out per line and peak RSS, with enrichment off
 * as the same-run baseline.
 *
 * Options: --lines N (default 1,000,000), --rounds N (OTLP runs per mode, default 2), --only otlp|loki,
 * --source ts|js (which build the sections and their agent processes run: see runtime.ts; the npm
 * script runs the compiled one).
 */
import { spawnSync } from 'node:child_process';
import { extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { RUNTIME, selectSource } from './runtime.ts';

const SECTIONS = {
  otlp: { file: 'export-otlp', passRounds: true },
  loki: { file: 'export-loki', passRounds: false },
} as const;

selectSource(import.meta.filename);
const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '2' },
    only: { type: 'string' },
  },
});

const names = values.only ? [values.only] : Object.keys(SECTIONS);
let failed = false;
console.log(`runtime of the sections and agent processes: ${RUNTIME}`);
for (const name of names) {
  const section = SECTIONS[name as keyof typeof SECTIONS];
  if (!section) throw new Error(`Unknown section ${name}: expected ${Object.keys(SECTIONS).join(' or ')}`);
  const args = [
    join(import.meta.dirname, section.file + extname(import.meta.filename)),
    '--lines',
    values.lines,
  ];
  if (section.passRounds) args.push('--rounds', values.rounds);
  console.log(`\n=== ${name} ===`);
  // The sections and their agent processes run with this process's V8 flags (npm scripts set them as `npm start` does).
  const run = spawnSync(process.execPath, [...process.execArgv, ...args], { stdio: 'inherit' });
  if (run.status !== 0) failed = true;
}
process.exitCode = failed ? 1 : 0;
