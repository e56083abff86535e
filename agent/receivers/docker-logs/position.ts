/**
 * Where a docker_logs stream is: the timestamp of the last message taken and how many messages with
 * exactly that timestamp were taken. The engine's `since` filter keeps messages whose timestamp equals
 * `since`, and two messages can share a nanosecond timestamp, so the count says how many of those to
 * drop again on resume.
 */
export interface Position {
  readonly timeUnixNano: bigint;
  readonly lines: number;
}

/** The checkpoint file's shape: JSON has no bigint, so the time is a decimal string. */
export interface StoredPosition {
  readonly timeUnixNano: string;
  readonly lines: number;
}

export const toStored = (p: Position): StoredPosition => ({
  timeUnixNano: p.timeUnixNano.toString(),
  lines: p.lines,
});

/** Reads a stored checkpoint, or undefined when it is missing or not ours. */
export function fromStored(value: unknown): Position | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { timeUnixNano, lines } = value as Partial<StoredPosition>;
  if (typeof timeUnixNano !== 'string' || !/^\d+$/.test(timeUnixNano)) return undefined;
  if (typeof lines !== 'number' || !Number.isInteger(lines) || lines < 0) return undefined;
  return { timeUnixNano: BigInt(timeUnixNano), lines };
}

/**
 * The position after taking one more message stamped `time`. stdout and stderr are stamped by two
 * copiers, so the log can hold a message slightly older than the one before it: the position never
 * moves back (a resume would repeat lines).
 */
export function advance(p: Position | undefined, time: bigint): Position {
  if (p === undefined || time > p.timeUnixNano) return { timeUnixNano: time, lines: 1 };
  return time === p.timeUnixNano ? { timeUnixNano: time, lines: p.lines + 1 } : p;
}

/** Negative when `a` is before `b`. `undefined` (nothing taken yet) is before everything. */
export function comparePositions(a: Position | undefined, b: Position | undefined): number {
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? -1 : 1;
  if (a.timeUnixNano !== b.timeUnixNano) return a.timeUnixNano < b.timeUnixNano ? -1 : 1;
  return a.lines - b.lines;
}

/**
 * Drops the messages a `since=<resume time>` request repeats: those stamped before the resume time, and
 * the first `lines` stamped exactly at it. Everything after the first newer message passes.
 */
export function createOverlapFilter(resume: Position | undefined): (time: bigint) => boolean {
  let skipAtTime = resume?.lines ?? 0;
  let done = resume === undefined;
  return (time) => {
    if (done) return true;
    const at = (resume as Position).timeUnixNano;
    if (time < at) return false;
    if (time === at && skipAtTime > 0) {
      skipAtTime--;
      return false;
    }
    done = true;
    return true;
  };
}
