import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Engine, TEST_IMAGES } from './dockerd.ts';

/** Starts a detached container without a network: `args` are further flags, the image and its command. */
export function runDetached(engine: Engine, ...args: string[]): Promise<string> {
  return engine.docker('run', '-d', '--network', 'none', ...args);
}

/** Runs the labelled app image: it runs `script`, then stays up for `upSeconds`, like a service would. */
export function runApp(engine: Engine, name: string, script: string, upSeconds: number): Promise<string> {
  return engine.docker(
    'run',
    '-d',
    '--name',
    name,
    '--network',
    'none',
    TEST_IMAGES.app,
    'sh',
    '-c',
    `${script}; exec sleep ${upSeconds}`,
  );
}

/**
 * The engine's own record of a container's lines (its json-file log, read independently of labelcast):
 * body without the newline, stream, and the RFC3339Nano time as exact Unix nanoseconds.
 */
export function engineLines(engine: Engine, id: string): { line: string; stream: string; ns: bigint }[] {
  const file = join(engine.dataRoot, 'containers', id, `${id}-json.log`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const { log, stream, time } = JSON.parse(l) as { log: string; stream: string; time: string };
      const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(time);
      assert.ok(m, `unexpected time ${time}`);
      const seconds = BigInt(Date.parse(`${m[1]}Z`) / 1000);
      return {
        line: log.replace(/\n$/, ''),
        stream,
        ns: seconds * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0')),
      };
    });
}

/**
 * Posts one span as OTLP/JSON from inside container `id` with busybox wget, as an application there
 * would, and returns the reply body.
 */
export function postSpanFrom(
  engine: Engine,
  id: string,
  url: string,
  span: { serviceName: string; traceId: string; spanId: string; name: string },
): Promise<string> {
  const json = JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: span.serviceName } }] },
        scopeSpans: [{ spans: [{ traceId: span.traceId, spanId: span.spanId, name: span.name }] }],
      },
    ],
  });
  return engine.docker(
    'exec',
    id,
    'wget',
    '-q',
    '-O',
    '-',
    '--post-data',
    json,
    '--header',
    'Content-Type: application/json',
    url,
  );
}
