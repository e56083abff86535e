/** What every log receiver shares in building records. */
import type { ContainerEntry } from '../metadata/types.ts';
import type { LogRecord, LogStream } from './types.ts';

/** The attribute every receiver puts on a record cut at its max_line_bytes. */
export const TRUNCATED_ATTRIBUTE = 'log.truncated';

/** Now, as Unix nanoseconds (the observed time of records read in one chunk). */
export const nowUnixNano = (): bigint => BigInt(Date.now()) * 1_000_000n;

/** Builds a receiver's record, with severity detected from the body; enrich completes `container`. */
export function makeRecord(
  containerId: string,
  timeUnixNano: bigint,
  observedUnixNano: bigint,
  body: string,
  stream: LogStream,
  attributes: Record<string, string> | undefined,
  container: ContainerEntry | undefined = undefined,
): LogRecord {
  const severity = detectSeverity(body, stream);
  return {
    timeUnixNano,
    observedUnixNano,
    body,
    stream,
    severityNumber: severity ? severity[0] : 0,
    severityText: severity?.[1],
    attributes,
    containerId,
    container,
  };
}

const LEVELS: Record<string, [number, string]> = {
  trace: [1, 'TRACE'],
  debug: [5, 'DEBUG'],
  info: [9, 'INFO'],
  notice: [10, 'INFO2'],
  warn: [13, 'WARN'],
  warning: [13, 'WARN'],
  error: [17, 'ERROR'],
  err: [17, 'ERROR'],
  critical: [21, 'FATAL'],
  crit: [21, 'FATAL'],
  fatal: [21, 'FATAL'],
  panic: [21, 'FATAL'],
};
/** pino/bunyan numeric levels. */
const NUMERIC_LEVELS: Record<string, [number, string]> = {
  '10': [1, 'TRACE'],
  '20': [5, 'DEBUG'],
  '30': [9, 'INFO'],
  '40': [13, 'WARN'],
  '50': [17, 'ERROR'],
  '60': [21, 'FATAL'],
};
const STDERR: [number, string] = [17, 'ERROR'];
const LEVEL_KEY = '"level":';

/**
 * Severity, cheaply: a JSON body's `level` field (names such as `warn`/`ERROR`, or pino's numbers) wins;
 * otherwise a stderr line is ERROR and a stdout line is unspecified. Only bodies that start with `{`
 * are searched, and only with `indexOf`.
 */
export function detectSeverity(body: string, stream: LogStream): [number, string] | undefined {
  if (body.charCodeAt(0) === 123 /* { */) {
    const at = body.indexOf(LEVEL_KEY);
    if (at > 0) {
      let start = at + LEVEL_KEY.length;
      if (body.charCodeAt(start) === 32) start++;
      let found: [number, string] | undefined;
      if (body.charCodeAt(start) === 34 /* " */) {
        const end = body.indexOf('"', start + 1);
        if (end > 0 && end - start < 12) found = LEVELS[body.slice(start + 1, end).toLowerCase()];
      } else found = NUMERIC_LEVELS[body.slice(start, start + 2)];
      if (found) return found;
    }
  }
  return stream === 'stderr' ? STDERR : undefined;
}
