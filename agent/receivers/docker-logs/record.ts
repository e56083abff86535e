import type { LogRecord, LogStream } from '../../pipeline/types.ts';

/** OpenTelemetry severity numbers for the level names applications write. */
const LEVELS: Readonly<Record<string, readonly [number, string]>> = {
  trace: [1, 'TRACE'],
  debug: [5, 'DEBUG'],
  info: [9, 'INFO'],
  notice: [10, 'INFO'],
  warn: [13, 'WARN'],
  warning: [13, 'WARN'],
  error: [17, 'ERROR'],
  err: [17, 'ERROR'],
  fatal: [21, 'FATAL'],
  critical: [21, 'FATAL'],
  panic: [21, 'FATAL'],
};
const JSON_LEVEL = /"(?:level|severity)"\s*:\s*"([A-Za-z]+)"/;

/**
 * A severity, only where it is cheap to see: a `level` (or `severity`) string in a JSON body, else
 * ERROR for stderr, else unspecified. No full JSON parse on the hot path.
 */
export function detectSeverity(body: string, stream: LogStream): readonly [number, string | undefined] {
  if (body.charCodeAt(0) === 0x7b) {
    const m = JSON_LEVEL.exec(body);
    const level = m ? LEVELS[(m[1] as string).toLowerCase()] : undefined;
    if (level) return level;
  }
  return stream === 'stderr' ? [17, 'ERROR'] : [0, undefined];
}

/** Now, as Unix nanoseconds (the observed time of records read in one chunk). */
export const nowUnixNano = (): bigint => BigInt(Date.now()) * 1_000_000n;

/** Builds a record the enrich step completes (`container`). */
export function makeRecord(
  containerId: string,
  timeUnixNano: bigint,
  observedUnixNano: bigint,
  body: string,
  stream: LogStream,
  attributes: Record<string, string> | undefined,
): LogRecord {
  const [severityNumber, severityText] = detectSeverity(body, stream);
  return {
    timeUnixNano,
    observedUnixNano,
    body,
    stream,
    severityNumber,
    severityText,
    attributes,
    containerId,
    container: undefined,
  };
}
