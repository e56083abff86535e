import { type FileHandle, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { StateError } from '../../errors.ts';
import type { Payload } from './types.ts';

/*
 * Segment files `<seq>.seg` hold records appended one after another:
 *   magic u32 'LCS1' | data length u32 | record count u32 | crc32(count bytes + data) u32 | data
 *   data = meta length u16 | meta JSON {route, headers} | body
 * The magic lets a reader resynchronise after a damaged length field. `cursor.json` remembers how far
 * replay got, so a restart does not resend what was already delivered.
 */
const MAGIC = 0x4c435331;
const HEADER_BYTES = 16;
const SEGMENT_SUFFIX = '.seg';
const CURSOR_FILE = 'cursor.json';
const SCAN_CHUNK = 64 * 1024;
/** Header plus a typical meta JSON; only for the `full()` estimate. */
const RECORD_OVERHEAD = HEADER_BYTES + 2 + 128;

export interface SpoolOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly policy: 'block' | 'drop_oldest';
  readonly logger: Logger;
  /** A record failed its CRC or framing check and was skipped. */
  onCorrupt(): void;
  /** Records deleted unsent (`drop_oldest`) or refused (larger than the whole spool). */
  onDropped(records: number, reason: 'spool_full'): void;
  /** Called after each append; readers may have work. */
  onAppend(): void;
  /** Called when space was freed (a segment deleted). */
  onSpaceFreed(): void;
}

/** A payload read back from the spool; call `done()` once it is sent or dropped for good. */
export interface SpoolEntry {
  readonly payload: Payload;
  readonly bytes: number;
  done(): void;
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  size: number;
  /** Offsets of records handed out and not yet done. */
  readonly outstanding: Set<number>;
  fullyRead: boolean;
  deleted: boolean;
  readFh: FileHandle | undefined;
}

function segmentName(seq: number): string {
  return `${String(seq).padStart(12, '0')}${SEGMENT_SUFFIX}`;
}

function encodeRecord(payload: Payload): Buffer {
  const meta = Buffer.from(JSON.stringify({ route: payload.route, headers: payload.headers }));
  const dataLength = 2 + meta.length + payload.body.length;
  const out = Buffer.allocUnsafe(HEADER_BYTES + dataLength);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(dataLength, 4);
  out.writeUInt32BE(payload.records, 8);
  out.writeUInt16BE(meta.length, HEADER_BYTES);
  meta.copy(out, HEADER_BYTES + 2);
  out.set(payload.body, HEADER_BYTES + 2 + meta.length);
  out.writeUInt32BE(crc32(out.subarray(HEADER_BYTES), crc32(out.subarray(8, 12))), 12);
  return out;
}

function decodeData(records: number, data: Buffer): Payload {
  const metaLength = data.readUInt16BE(0);
  const meta = JSON.parse(data.subarray(2, 2 + metaLength).toString()) as {
    route: string;
    headers: Record<string, string>;
  };
  return { route: meta.route, headers: meta.headers, records, body: data.subarray(2 + metaLength) };
}

/**
 * The append-only, CRC-checked disk spool of one exporter. Appends are fsynced before they resolve, so
 * a spooled payload is durable. Reads return payloads in append order, across restarts.
 */
export class Spool {
  readonly #o: SpoolOptions;
  readonly #segmentBytes: number;
  #segments: Segment[] = [];
  #writeSeg: Segment | undefined;
  #writeFh: FileHandle | undefined;
  #nextSeq = 1;
  #readSeg: Segment | undefined;
  #readOffset = 0;
  #totalBytes = 0;
  #unreadBytes = 0;
  #reading: Promise<unknown> = Promise.resolve();
  #cursorDirty = false;
  #cursorTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #spaceWaiters: (() => void)[] = [];

  constructor(options: SpoolOptions) {
    this.#o = options;
    // A segment must be small next to the cap, or `block` could wait on a segment that never closes.
    this.#segmentBytes = Math.max(1, Math.min(options.segmentBytes, Math.floor(options.maxBytes / 4)));
  }

  /** Bytes on disk. */
  get bytes(): number {
    return this.#totalBytes;
  }

  /** True while there are spooled records not yet handed out by `next()`. */
  hasUnread(): boolean {
    return this.#unreadBytes > 0;
  }

  /** True when an append is waiting for space, or one of a `bytes` body would have to wait or evict. */
  full(bytes: number): boolean {
    return this.#spaceWaiters.length > 0 || this.#totalBytes + RECORD_OVERHEAD + bytes > this.#o.maxBytes;
  }

  /** Finds the segments a previous run left and positions the reader at its saved cursor. */
  async open(): Promise<void> {
    try {
      await mkdir(this.#o.dir, { recursive: true });
      const names = (await readdir(this.#o.dir)).filter((n) => /^\d+\.seg$/.test(n)).sort();
      let cursor: { seq: number; offset: number } | undefined;
      try {
        cursor = JSON.parse(await readFile(join(this.#o.dir, CURSOR_FILE), 'utf8')) as {
          seq: number;
          offset: number;
        };
      } catch {
        cursor = undefined;
      }
      for (const name of names) {
        const seq = Number.parseInt(name, 10);
        const path = join(this.#o.dir, name);
        if (cursor && seq < cursor.seq) {
          await unlink(path);
          continue;
        }
        const fh = await open(path, 'r');
        const { size } = await fh.stat();
        await fh.close();
        this.#segments.push({
          seq,
          path,
          size,
          outstanding: new Set(),
          fullyRead: false,
          deleted: false,
          readFh: undefined,
        });
        this.#totalBytes += size;
        this.#unreadBytes += size;
        this.#nextSeq = seq + 1;
      }
      if (cursor) this.#nextSeq = Math.max(this.#nextSeq, cursor.seq);
      this.#readSeg = this.#segments[0];
      if (cursor && this.#readSeg?.seq === cursor.seq) {
        this.#readOffset = Math.min(cursor.offset, this.#readSeg.size);
        this.#unreadBytes -= this.#readOffset;
      }
    } catch (err) {
      throw new StateError(
        `Cannot open the disk spool ${this.#o.dir}: ${(err as Error).message} (check that state_dir is writable)`,
        { cause: err },
      );
    }
    this.#cursorTimer = setInterval(() => void this.#saveCursorIfDirty(), 1000);
    this.#cursorTimer.unref();
  }

  /**
   * Appends one payload durably. Under `block` it waits for space until `signal` aborts; under
   * `drop_oldest` it deletes the oldest segments (counted). Resolves false when nothing was written.
   */
  async append(payload: Payload, signal: AbortSignal): Promise<boolean> {
    const record = encodeRecord(payload);
    if (record.length > this.#o.maxBytes) {
      this.#o.onDropped(payload.records, 'spool_full');
      return false;
    }
    while (this.#totalBytes + record.length > this.#o.maxBytes) {
      if (this.#o.policy === 'drop_oldest') await this.#evictOldest();
      else if (!(await this.#waitForSpace(signal))) return false;
    }
    if (this.#closed) return false;
    if (!this.#writeSeg || this.#writeSeg.size + record.length > this.#segmentBytes) await this.#rotate();
    const seg = this.#writeSeg as Segment;
    const fh = this.#writeFh as FileHandle;
    await fh.write(record, 0, record.length, seg.size);
    await fh.datasync();
    seg.size += record.length;
    this.#totalBytes += record.length;
    this.#unreadBytes += record.length;
    if (!this.#readSeg) {
      this.#readSeg = seg;
      this.#readOffset = 0;
    }
    this.#o.onAppend();
    return true;
  }

  /** The next spooled payload in append order, or undefined when everything was handed out. */
  next(): Promise<SpoolEntry | undefined> {
    const result = this.#reading.then(() => this.#readNext());
    this.#reading = result.catch(() => undefined);
    return result;
  }

  /** Saves the replay cursor, deletes finished segments and closes files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#cursorTimer);
    await this.#reading.catch(() => undefined);
    for (const seg of [...this.#segments]) {
      if (
        seg.outstanding.size === 0 &&
        (seg.fullyRead || (seg === this.#readSeg && this.#readOffset >= seg.size))
      )
        await this.#delete(seg);
    }
    await this.#writeFh?.close();
    this.#writeFh = undefined;
    this.#writeSeg = undefined;
    for (const seg of this.#segments) await seg.readFh?.close();
    await this.#saveCursor();
    this.#wakeSpaceWaiters();
  }

  #waitForSpace(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted || this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = () => resolve(false);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#spaceWaiters.push(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(!this.#closed);
      });
    });
  }

  #wakeSpaceWaiters(): void {
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    for (const wake of waiters) wake();
    this.#o.onSpaceFreed();
  }

  async #rotate(): Promise<void> {
    await this.#writeFh?.close();
    const seq = this.#nextSeq++;
    const seg: Segment = {
      seq,
      path: join(this.#o.dir, segmentName(seq)),
      size: 0,
      outstanding: new Set(),
      fullyRead: false,
      deleted: false,
      readFh: undefined,
    };
    this.#writeFh = await open(seg.path, 'wx');
    this.#writeSeg = seg;
    this.#segments.push(seg);
  }

  async #evictOldest(): Promise<void> {
    const seg = this.#segments[0];
    if (!seg) return;
    if (seg === this.#writeSeg) await this.#rotate();
    const index = this.#segments.indexOf(this.#readSeg as Segment);
    const readPos = index < 0 ? Number.POSITIVE_INFINITY : index;
    const from = seg === this.#readSeg ? this.#readOffset : readPos > 0 ? seg.size : 0;
    const records = await this.#countRecords(seg, from);
    if (records > 0) this.#o.onDropped(records, 'spool_full');
    if (seg === this.#readSeg) {
      this.#unreadBytes -= seg.size - this.#readOffset;
      this.#readSeg = this.#segments[1];
      this.#readOffset = 0;
    } else if (from === 0) {
      this.#unreadBytes -= seg.size;
    }
    this.#o.logger.warn(
      { segment: seg.path, records },
      'Deleted the oldest spool segment unsent: the spool is full (policy drop_oldest)',
    );
    await this.#delete(seg);
  }

  /** Counts the records of a segment from `offset` by walking the headers. */
  async #countRecords(seg: Segment, offset: number): Promise<number> {
    let count = 0;
    const fh = await this.#readHandle(seg);
    const header = Buffer.alloc(HEADER_BYTES);
    let pos = offset;
    while (pos + HEADER_BYTES <= seg.size) {
      await fh.read(header, 0, HEADER_BYTES, pos);
      if (header.readUInt32BE(0) !== MAGIC) break;
      count += header.readUInt32BE(8);
      pos += HEADER_BYTES + header.readUInt32BE(4);
    }
    return count;
  }

  async #readHandle(seg: Segment): Promise<FileHandle> {
    seg.readFh ??= await open(seg.path, 'r');
    return seg.readFh;
  }

  async #delete(seg: Segment): Promise<void> {
    if (seg.deleted) return;
    seg.deleted = true;
    this.#segments = this.#segments.filter((s) => s !== seg);
    if (seg === this.#writeSeg) {
      await this.#writeFh?.close();
      this.#writeFh = undefined;
      this.#writeSeg = undefined;
    }
    await seg.readFh?.close();
    seg.readFh = undefined;
    await unlink(seg.path).catch(() => undefined);
    this.#totalBytes -= seg.size;
    this.#cursorDirty = true;
    this.#wakeSpaceWaiters();
  }

  async #maybeDelete(seg: Segment): Promise<void> {
    if (seg.fullyRead && seg.outstanding.size === 0) await this.#delete(seg);
  }

  async #readNext(): Promise<SpoolEntry | undefined> {
    for (;;) {
      const seg = this.#readSeg;
      if (!seg || this.#closed) return undefined;
      if (this.#readOffset >= seg.size) {
        if (seg === this.#writeSeg) return undefined;
        const next = this.#segments[this.#segments.indexOf(seg) + 1];
        seg.fullyRead = true;
        this.#readSeg = next;
        this.#readOffset = 0;
        await this.#maybeDelete(seg);
        if (!next) return undefined;
        continue;
      }
      const fh = await this.#readHandle(seg);
      const offset = this.#readOffset;
      const header = Buffer.alloc(HEADER_BYTES);
      const { bytesRead } = await fh.read(header, 0, HEADER_BYTES, offset);
      const length = header.readUInt32BE(4);
      if (
        bytesRead < HEADER_BYTES ||
        header.readUInt32BE(0) !== MAGIC ||
        offset + HEADER_BYTES + length > seg.size
      ) {
        await this.#resync(seg, fh, offset + 1);
        continue;
      }
      const data = Buffer.allocUnsafe(length);
      await fh.read(data, 0, length, offset + HEADER_BYTES);
      const end = offset + HEADER_BYTES + length;
      this.#unreadBytes -= end - offset;
      this.#readOffset = end;
      if (crc32(data, crc32(header.subarray(8, 12))) !== header.readUInt32BE(12)) {
        this.#corrupt(seg, offset);
        continue;
      }
      let payload: Payload;
      try {
        payload = decodeData(header.readUInt32BE(8), data);
      } catch {
        this.#corrupt(seg, offset);
        continue;
      }
      seg.outstanding.add(offset);
      let finished = false;
      return {
        payload,
        bytes: length,
        done: () => {
          if (finished) return;
          finished = true;
          seg.outstanding.delete(offset);
          this.#cursorDirty = true;
          void this.#maybeDelete(seg).catch((err: unknown) =>
            this.#o.logger.warn({ err }, 'Cannot delete a replayed spool segment: it will be replayed again'),
          );
        },
      };
    }
  }

  #corrupt(seg: Segment, offset: number): void {
    this.#o.onCorrupt();
    this.#o.logger.error(
      { segment: seg.path, offset },
      'Skipped a corrupt spool record: its CRC or framing does not match (the rest of the spool is kept)',
    );
  }

  /** Skips damaged bytes up to the next record magic (or the segment's end). */
  async #resync(seg: Segment, fh: FileHandle, from: number): Promise<void> {
    this.#corrupt(seg, from - 1);
    const magic = Buffer.alloc(4);
    magic.writeUInt32BE(MAGIC);
    let pos = from;
    let found = seg.size;
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK);
    while (pos < seg.size) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(SCAN_CHUNK, seg.size - pos), pos);
      const at = chunk.subarray(0, bytesRead).indexOf(magic);
      if (at >= 0) {
        found = pos + at;
        break;
      }
      if (bytesRead < 4) break;
      pos += bytesRead - 3;
    }
    this.#unreadBytes -= found - this.#readOffset;
    this.#readOffset = found;
  }

  /** The first position not yet delivered: the lowest outstanding record, or the read position. */
  #cursor(): { seq: number; offset: number } | undefined {
    for (const seg of this.#segments) {
      if (seg.outstanding.size > 0) return { seq: seg.seq, offset: Math.min(...seg.outstanding) };
      if (seg === this.#readSeg) return { seq: seg.seq, offset: this.#readOffset };
    }
    return undefined;
  }

  async #saveCursorIfDirty(): Promise<void> {
    if (!this.#cursorDirty || this.#closed) return;
    await this.#saveCursor().catch((err: unknown) =>
      this.#o.logger.warn({ err }, 'Cannot save the spool replay cursor: a restart may resend some records'),
    );
  }

  #saving: Promise<void> = Promise.resolve();

  #saveCursor(): Promise<void> {
    const run = this.#saving.then(() => this.#writeCursor());
    this.#saving = run.catch(() => undefined);
    return run;
  }

  async #writeCursor(): Promise<void> {
    this.#cursorDirty = false;
    const cursor = this.#cursor() ?? { seq: this.#nextSeq, offset: 0 };
    const path = join(this.#o.dir, CURSOR_FILE);
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(cursor));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  }
}
