import { type FSWatcher, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Counter } from 'prom-client';
import type { ContainerEntry } from '../../metadata/types.ts';
import { createOrderedAcks, type OrderedAcks } from '../../pipeline/checkpoints.ts';
import { makeRecord, TRUNCATED_ATTRIBUTE } from '../../pipeline/log-record.ts';
import type { Consumer, LogBatch, LogRecord, LogStream } from '../../pipeline/types.ts';
import { firstRecordTime, type LogFile, type LogSource, listLogFiles, openSource } from './files.ts';
import { type LineFields, newLineFields, parseLine, parseTimeNano } from './parse.ts';

/**
 * A checkpoint: the file (by inode, so it is found again under whatever rotated name it has now), the
 * byte offset after the last whole record handed on, and that record's time (decimal ns). The time
 * detects inode reuse and locates the position when the file was compressed or deleted meanwhile.
 */
export interface FilePosition {
  readonly ino: number;
  readonly offset: number;
  readonly time: string;
}

export interface TailerMetrics {
  readonly lines: Counter;
  readonly bytes: Counter;
  readonly parseErrors: Counter;
  readonly truncated: Counter;
  readonly rotations: Counter;
}

export interface TailerOptions {
  readonly containerId: string;
  /** LogPath as the agent sees it (already re-rooted). */
  readonly logPath: string;
  readonly consumer: Consumer<LogBatch>;
  /** Where to start: a checkpoint, the beginning of the log, or its end. */
  readonly start: FilePosition | 'beginning' | 'end';
  readonly maxLineBytes: number;
  readonly chunkBytes: number;
  readonly commit: (position: FilePosition) => void;
  readonly onError: (err: unknown) => void;
  readonly metrics: TailerMetrics;
}

/** A line longer than this (escaped JSON of one 16 KiB chunk is far smaller) is skipped, not buffered. */
const MAX_PHYSICAL_LINE = 8 * 1024 * 1024;
/** Fallback poll when no inotify event arrives (e.g. on some network or overlay mounts). */
const POLL_MS = 1000;
/** Pause before retrying after a read error or a rejected consume. */
const RETRY_MS = 1000;
/** After `die`, the engine may still flush the last lines: look once more after this long. */
const SETTLE_MS = 500;

interface Partial {
  /** Where its first line starts in the chunk being parsed; -1 when that was an earlier chunk. */
  openedAt: number;
  parts: string[];
  bytes: number;
  truncated: boolean;
  timeUnixNano: bigint;
  stream: LogStream;
  attrs: Record<string, string> | undefined;
}

/**
 * Follows one container's json-file log across rotations: one read chunk becomes one batch, handed
 * on and awaited (backpressure), and its ack commits the position in read order.
 */
export class Tailer {
  entry: ContainerEntry | undefined;
  readonly acks: OrderedAcks<FilePosition>;
  private readonly opts: TailerOptions;
  private source: LogSource | undefined;
  /** Offset in `source` after the last whole line consumed. */
  private readPos = 0;
  /** The position after the last whole record: where a restart resumes. */
  private position: FilePosition | undefined;
  private lastTime = -1n;
  /** Records at or before this time are dropped (resuming by time after the file was compressed). */
  private skipUntil: bigint | undefined;
  /** Records being joined from partials, one per stream: the engine interleaves stdout and stderr lines. */
  private pendingOut: Partial | undefined;
  private pendingErr: Partial | undefined;
  private buf: Buffer;
  private readonly fields: LineFields = newLineFields();
  private loop: Promise<void> | undefined;
  private stopped = false;
  /** Read to the end, then stop (the container died or was removed). */
  private draining = false;
  private settle = false;
  /** In a run of errors: only the first is reported. */
  private failing = false;
  private wake: (() => void) | undefined;
  private watcher: FSWatcher | undefined;

  constructor(opts: TailerOptions, entry: ContainerEntry | undefined) {
    this.opts = opts;
    this.entry = entry;
    this.buf = Buffer.allocUnsafe(opts.chunkBytes);
    this.acks = createOrderedAcks((p) => opts.commit(p));
  }

  get running(): boolean {
    return this.loop !== undefined;
  }

  /** Starts (or, after `drain`, resumes from where it stopped) following the log. */
  resume(): void {
    this.draining = false;
    this.stopped = false;
    if (this.loop) return;
    this.loop = this.run()
      .catch((err: unknown) => this.opts.onError(err))
      .finally(async () => {
        this.closeWatch();
        const source = this.source;
        this.source = undefined;
        await source?.close().catch(() => {});
        this.loop = undefined;
        // Resumed while the loop was ending (a quick die/start): go on.
        if (!this.stopped && !this.draining) this.resume();
      });
  }

  /**
   * Reads what the engine has written, then stops; `resume` continues from the same position. With
   * `settle`, it looks once more after a pause, for lines the engine flushes after a container's exit.
   */
  drain(settle: boolean): Promise<void> {
    this.draining = true;
    this.settle = settle;
    this.wake?.();
    return this.loop ?? Promise.resolve();
  }

  /** Stops reading now; a batch already handed on keeps its ack. */
  stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    return this.loop ?? Promise.resolve();
  }

  private async run(): Promise<void> {
    let settled = false;
    while (!this.stopped) {
      try {
        if ((await this.readChunk()) > 0) {
          settled = false;
          this.failing = false;
          continue;
        }
        if (this.stopped) break;
        if (await this.advance()) continue;
      } catch (err) {
        this.fail(err);
        // Reopen from the last whole record after a pause: the file may come back (permissions, remount).
        const source = this.source;
        this.source = undefined;
        await source?.close().catch(() => {});
        await this.sleep(RETRY_MS);
        continue;
      }
      if (this.draining) {
        if (settled || !this.settle) {
          if (this.settle) await this.flushPartials();
          break;
        }
        settled = true;
        await this.sleep(SETTLE_MS);
        continue;
      }
      await this.waitForChange();
    }
  }

  /** Opens the file to start from. Returns false when the log does not exist (yet). */
  private async openInitial(): Promise<boolean> {
    const start = this.position ?? this.opts.start;
    // Resuming re-reads an open partial from its first line.
    this.pendingOut = undefined;
    this.pendingErr = undefined;
    const files = await listLogFiles(this.opts.logPath);
    if (files.length === 0) return false;
    const current = files[files.length - 1] as LogFile;
    if (start === 'beginning' || start === 'end') {
      if (start === 'beginning') await this.openAt(files[0] as LogFile, 0);
      else await this.openAt(current, current.gz ? 0 : await this.lineStartAtEnd(current));
      // Checkpoint the starting point at once: an agent restarted before this container logs anything
      // must resume here, not apply start_at again and skip what was written meanwhile.
      if (this.position) this.acks.issue(this.position)();
    } else {
      const time = BigInt(start.time);
      this.lastTime = time;
      const file = files.find((f) => f.ino === start.ino && f.size >= start.offset);
      // An inode can be reused by a later file: trust it only if the file begins before the checkpoint
      // (a checkpoint taken before any record was read, time -1, has nothing to compare with).
      const first = file && time >= 0n ? await firstRecordTime(file) : undefined;
      if (file && (first === undefined || first <= time)) {
        await this.openAt(file, start.offset);
        this.position = start;
      } else {
        // The file was compressed or deleted: start in the newest file that begins at or before the
        // checkpoint's record and drop what that record already covered.
        let from = files[0] as LogFile;
        for (const f of files) {
          const t = await firstRecordTime(f);
          if (t !== undefined && t <= time) from = f;
        }
        await this.openAt(from, 0);
        this.skipUntil = time;
      }
    }
    return true;
  }

  /** With start_at=end: the current size, or the start of the line being written there. */
  private async lineStartAtEnd(file: LogFile): Promise<number> {
    if (file.size === 0) return 0;
    const source = await openSource(file);
    try {
      const tail = Buffer.allocUnsafe(Math.min(file.size, 64 * 1024));
      const from = file.size - tail.length;
      const n = await source.read(tail, from);
      const nl = tail.lastIndexOf(10, n - 1);
      return nl < 0 ? file.size : from + nl + 1;
    } finally {
      await source.close();
    }
  }

  private async openAt(file: LogFile, offset: number): Promise<void> {
    const source = await openSource(file);
    await this.source?.close();
    this.source = source;
    this.readPos = offset;
    this.position ??= { ino: source.file.ino, offset, time: this.lastTime.toString() };
  }

  /** Reads one chunk of whole lines into one batch. Returns the bytes consumed (0 at the end). */
  private async readChunk(): Promise<number> {
    const source = this.source;
    if (!source) return 0;
    let n = await source.read(this.buf, this.readPos);
    let end = n === 0 ? -1 : this.buf.lastIndexOf(10, n - 1);
    while (end < 0 && n === this.buf.length) {
      if (this.buf.length >= MAX_PHYSICAL_LINE) {
        // A line this long is not the engine's; skip to its end.
        this.opts.metrics.parseErrors.inc();
        this.readPos += n;
        return n;
      }
      this.buf = Buffer.allocUnsafe(this.buf.length * 2);
      n = await source.read(this.buf, this.readPos);
      end = this.buf.lastIndexOf(10, n - 1);
    }
    if (end < 0) return 0;
    const consumed = end + 1;
    const text = this.buf.toString('utf8', 0, consumed);
    const base = this.readPos;
    this.readPos += consumed;
    this.opts.metrics.bytes.inc(consumed);
    await this.emit(this.parse(text, base, source.file.ino));
    return consumed;
  }

  private parse(text: string, base: number, ino: number): LogRecord[] {
    const records: LogRecord[] = [];
    const observed = BigInt(Date.now()) * 1_000_000n;
    const fields = this.fields;
    const containerId = this.opts.containerId;
    const container = this.entry;
    const cap = this.opts.maxLineBytes;
    // A TTY turns `\n` into `\r\n`; the `\r` is the terminal's, not the application's (as in docker_logs).
    const tty = container?.tty === true;
    if (this.pendingOut) this.pendingOut.openedAt = -1;
    if (this.pendingErr) this.pendingErr.openedAt = -1;
    let lines = 0;
    let from = 0;
    while (from < text.length) {
      const nl = text.indexOf('\n', from);
      const line = text.slice(from, nl);
      const lineStart = from;
      from = nl + 1;
      lines++;
      if (!parseLine(line, fields)) {
        this.opts.metrics.parseErrors.inc();
        continue;
      }
      const time = parseTimeNano(fields.time);
      if (time === undefined) {
        this.opts.metrics.parseErrors.inc();
        continue;
      }
      this.lastTime = time;
      const log = fields.log;
      const stream = fields.stream;
      const complete = log.charCodeAt(log.length - 1) === 10;
      let pending = stream === 'stdout' ? this.pendingOut : this.pendingErr;
      if (!complete || pending) {
        if (!pending) {
          pending = {
            openedAt: lineStart,
            parts: [],
            bytes: 0,
            truncated: false,
            timeUnixNano: time,
            stream,
            attrs: fields.attrs,
          };
          if (stream === 'stdout') this.pendingOut = pending;
          else this.pendingErr = pending;
        }
        const piece = complete ? log.slice(0, lineEnd(log, tty)) : log;
        if (!pending.truncated) {
          const size = Buffer.byteLength(piece);
          if (pending.bytes + size > cap) {
            pending.parts.push(truncateUtf8(piece, cap - pending.bytes));
            pending.bytes = cap;
            pending.truncated = true;
          } else {
            pending.parts.push(piece);
            pending.bytes += size;
          }
        }
        if (!complete) continue;
        if (stream === 'stdout') this.pendingOut = undefined;
        else this.pendingErr = undefined;
        if (pending.truncated) this.opts.metrics.truncated.inc();
        if (this.skipUntil !== undefined && pending.timeUnixNano <= this.skipUntil) continue;
        this.skipUntil = undefined;
        const body = pending.parts.join('');
        const attributes = pending.truncated
          ? { ...pending.attrs, [TRUNCATED_ATTRIBUTE]: 'true' }
          : pending.attrs;
        records.push(
          makeRecord(containerId, pending.timeUnixNano, observed, body, stream, attributes, container),
        );
        continue;
      }
      if (this.skipUntil !== undefined) {
        if (time <= this.skipUntil) continue;
        this.skipUntil = undefined;
      }
      records.push(
        makeRecord(
          containerId,
          time,
          observed,
          log.slice(0, lineEnd(log, tty)),
          stream,
          fields.attrs,
          container,
        ),
      );
    }
    this.opts.metrics.lines.inc(lines);
    const out = this.pendingOut;
    const err = this.pendingErr;
    if (!out && !err) {
      this.position = { ino, offset: base + Buffer.byteLength(text), time: this.lastTime.toString() };
    } else if ((out?.openedAt ?? Infinity) > 0 && (err?.openedAt ?? Infinity) > 0) {
      // Every open partial began in this chunk: a restart must begin at the first of them. (An open
      // partial from an earlier chunk, or one opened at this chunk's start, keeps the position as is.)
      const at = Math.min(out?.openedAt ?? Infinity, err?.openedAt ?? Infinity);
      const offset = base + Buffer.byteLength(text.slice(0, at));
      this.position = { ino, offset, time: this.timeBefore(text, at) };
    }
    return records;
  }

  /** The time of the last record ending before `at` (the checkpoint's time for a resume at `at`). */
  private timeBefore(text: string, at: number): string {
    const prevStart = text.lastIndexOf('\n', at - 2) + 1;
    const fields = newLineFields();
    if (parseLine(text.slice(prevStart, at - 1), fields)) {
      const t = parseTimeNano(fields.time);
      if (t !== undefined) return t.toString();
    }
    return this.position?.time ?? '-1';
  }

  /**
   * The container exited with an unterminated last line (a partial the engine will never complete):
   * send it as it is, as the Docker log API does.
   */
  private async flushPartials(): Promise<void> {
    const source = this.source;
    const open = [this.pendingOut, this.pendingErr].filter((p) => p !== undefined);
    if (!source || open.length === 0) return;
    this.pendingOut = undefined;
    this.pendingErr = undefined;
    const observed = BigInt(Date.now()) * 1_000_000n;
    const records: LogRecord[] = [];
    for (const pending of open.sort((a, b) => (a.timeUnixNano < b.timeUnixNano ? -1 : 1))) {
      if (this.skipUntil !== undefined && pending.timeUnixNano <= this.skipUntil) continue;
      const attributes = pending.truncated
        ? { ...pending.attrs, [TRUNCATED_ATTRIBUTE]: 'true' }
        : pending.attrs;
      records.push(
        makeRecord(
          this.opts.containerId,
          pending.timeUnixNano,
          observed,
          pending.parts.join(''),
          pending.stream,
          attributes,
          this.entry,
        ),
      );
    }
    this.position = { ino: source.file.ino, offset: this.readPos, time: this.lastTime.toString() };
    await this.emit(records);
  }

  private async emit(records: LogRecord[]): Promise<void> {
    const position = this.position;
    if (!position) return;
    const ack = this.acks.issue(position);
    if (records.length === 0) {
      ack();
      return;
    }
    const batch = { records, ack };
    // A rejected consume is backpressure: the batch was not taken, so offer the same batch again.
    while (!this.stopped) {
      try {
        await this.opts.consumer.consume(batch);
        return;
      } catch (err) {
        this.fail(err);
        await this.sleep(RETRY_MS);
      }
    }
  }

  /** Reports the first error of a run of failures; the tailer keeps retrying. */
  private fail(err: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.opts.onError(err);
  }

  /**
   * At the end of the current file: if the engine rotated it, finish it and move to the next file.
   * Returns true when reading should continue at once.
   */
  private async advance(): Promise<boolean> {
    const source = this.source;
    if (!source) return !!(await this.openInitial());
    if (!source.file.gz) {
      let current: number | undefined;
      try {
        current = (await stat(this.opts.logPath)).ino;
      } catch {
        // Removed with its container, or between rename and create: nothing to move to yet.
        return false;
      }
      if (current === source.file.ino) return false;
      // Rotated: the engine no longer writes to it; whatever was written before the rename is read now.
      while ((await this.readChunk()) > 0) if (this.stopped) return false;
    }
    const next = await this.nextFile(source.file);
    if (!next) return false;
    this.opts.metrics.rotations.inc();
    // A record still open across the rotation keeps its start in the previous file as the position.
    if (!this.pendingOut && !this.pendingErr) this.position = undefined;
    await this.openAt(next, 0);
    return true;
  }

  /** The file written after `file`: by inode while it still exists, by time once it was compressed or deleted. */
  private async nextFile(file: LogFile): Promise<LogFile | undefined> {
    const files = await listLogFiles(this.opts.logPath);
    const at = files.findIndex((f) => f.ino === file.ino);
    if (at >= 0) return files[at + 1];
    for (const f of files) {
      const t = await firstRecordTime(f);
      if (t === undefined || t > this.lastTime) return f;
    }
    return undefined;
  }

  private waitForChange(): Promise<void> {
    if (!this.watcher) {
      try {
        this.watcher = watch(dirname(this.opts.logPath), { persistent: false }, () => this.wake?.());
        this.watcher.on('error', () => this.closeWatch());
      } catch {
        // The directory is gone (container removed); the poll below still ends the wait.
      }
    }
    return this.sleep(POLL_MS);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private closeWatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

/** The longest prefix of `s` that fits in `bytes` UTF-8 bytes, never splitting a character. */
function truncateUtf8(s: string, bytes: number): string {
  if (bytes <= 0) return '';
  const buf = Buffer.from(s);
  if (buf.length <= bytes) return s;
  let end = bytes;
  while (end > 0 && ((buf[end] ?? 0) & 0xc0) === 0x80) end--;
  return buf.toString('utf8', 0, end);
}

/** Where a complete `log` value's text ends: before its `\n`, and before a TTY's `\r` too. */
function lineEnd(log: string, tty: boolean): number {
  return tty && log.charCodeAt(log.length - 2) === 13 ? -2 : -1;
}
