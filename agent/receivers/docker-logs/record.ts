import type { LogRecord, LogStream } from '../../pipeline/types.ts';
import { detectSeverity } from '../json-file/parse.ts';

/** The attribute a record cut at max_line_bytes carries (the same as json_file's). */
export const TRUNCATED_ATTRIBUTE = 'log.truncated';

/** Now, as Unix nanoseconds (the observed time of records read in one chunk). */
export const nowUnixNano = (): bigint => BigInt(Date.now()) * 1_000_000n;

/** Builds a record the enrich step completes (`container`); severity is detected as json_file does. */
export function makeRecord(
  containerId: string,
  timeUnixNano: bigint,
  observedUnixNano: bigint,
  body: string,
  stream: LogStream,
  attributes: Record<string, string> | undefined,
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
    container: undefined,
  };
}
