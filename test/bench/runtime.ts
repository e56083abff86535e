/**
 * Which build a benchmark process runs. The npm scripts compile the agent and these benchmarks with tsc
 * (`npm run build:bench`) and run dist/test/bench/*.js, so the measured processes load dist/agent/
 * as the container image does; `--source ts` runs the same benchmark from the TypeScript sources
 * (Node's type stripping, as `npm start` and the tests do). `--source js` does the reverse.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const COMPILED = import.meta.url.endsWith('.js');

export const RUNTIME = COMPILED
  ? 'compiled JavaScript (dist/, as the image runs it)'
  : 'TypeScript sources (Node type stripping)';

/**
 * Takes `--source js|ts` off process.argv; when it names the other build, runs `file` (the caller's
 * import.meta.filename) from that build with the same flags and arguments, and exits with its status.
 */
export function selectSource(file: string): void {
  const i = process.argv.indexOf('--source', 2);
  if (i < 0) return;
  const source = process.argv[i + 1];
  process.argv.splice(i, 2);
  if (source !== 'js' && source !== 'ts')
    throw new Error(`Cannot select the benchmark's source "${source}": use --source js or --source ts`);
  if ((source === 'js') === COMPILED) return;
  // test/bench/x.ts <-> dist/test/bench/x.js
  const base = resolve(dirname(file), '../..');
  const target = COMPILED
    ? join(dirname(base), relative(base, file)).replace(/\.js$/, '.ts')
    : join(base, 'dist', relative(base, file)).replace(/\.ts$/, '.js');
  if (!existsSync(target))
    throw new Error(
      `Cannot run ${target}: it does not exist; build the benchmarks first (npm run build:bench)`,
    );
  const run = spawnSync(process.execPath, [...process.execArgv, target, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  process.exit(run.status ?? 1);
}
