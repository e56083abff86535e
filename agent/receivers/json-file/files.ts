import { createReadStream } from 'node:fs';
import { type FileHandle, open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { newLineFields, parseLine, parseTimeNano } from './parse.ts';

/** One of a container's log files: the current `<id>-json.log` or a rotated `.N` / `.N.gz`. */
export interface LogFile {
  readonly path: string;
  readonly ino: number;
  readonly size: number;
  readonly gz: boolean;
}

/**
 * The container's log files, oldest first: `.N(.gz)` … `.1(.gz)`, then the current file. Docker
 * rotates by renaming, so a file keeps its inode while its name moves from the current file up to `.N`.
 */
export async function listLogFiles(logPath: string): Promise<LogFile[]> {
  const dir = dirname(logPath);
  const base = basename(logPath);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const found: { path: string; index: number; gz: boolean }[] = [];
  for (const name of names) {
    if (name === base) found.push({ path: logPath, index: 0, gz: false });
    else if (name.startsWith(`${base}.`)) {
      const m = /^(\d+)(\.gz)?$/.exec(name.slice(base.length + 1));
      if (m) found.push({ path: join(dir, name), index: Number(m[1]), gz: m[2] !== undefined });
    }
  }
  found.sort((a, b) => b.index - a.index);
  const files: LogFile[] = [];
  for (const f of found) {
    try {
      const st = await stat(f.path);
      files.push({ path: f.path, ino: st.ino, size: st.size, gz: f.gz });
    } catch {
      // Rotated or deleted between readdir and stat: the next listing sees it under its new name.
    }
  }
  return files;
}

const FIRST_LINE_BYTES = 256 * 1024;

/** The time of a file's first record, or undefined when it has none yet (or cannot be read). */
export async function firstRecordTime(file: LogFile): Promise<bigint | undefined> {
  let head: Buffer;
  try {
    head = file.gz
      ? await gunzipHead(file.path, FIRST_LINE_BYTES)
      : await readHead(file.path, FIRST_LINE_BYTES);
  } catch {
    return undefined;
  }
  const nl = head.indexOf(10);
  if (nl < 0) return undefined;
  const fields = newLineFields();
  return parseLine(head.toString('utf8', 0, nl), fields) ? parseTimeNano(fields.time) : undefined;
}

async function readHead(path: string, bytes: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function gunzipHead(path: string, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const stream = createReadStream(path).pipe(createGunzip());
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= bytes) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks);
}

/** Reads a log file sequentially from a byte offset (of the decompressed content for `.gz`). */
export interface LogSource {
  readonly file: LogFile;
  /** Fills `buf` from `position` and returns the byte count; 0 at the current end. */
  read(buf: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

export async function openSource(file: LogFile): Promise<LogSource> {
  return file.gz ? openGz(file) : openPlain(file);
}

async function openPlain(file: LogFile): Promise<LogSource> {
  const fh: FileHandle = await open(file.path, 'r');
  // The path may have been rotated between listing and opening: identify the file by the open handle.
  const st = await fh.stat();
  return {
    file: { ...file, ino: st.ino },
    async read(buf, position) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, position);
      return bytesRead;
    },
    close: () => fh.close(),
  };
}

/**
 * A rotated, compressed file never grows, so it is streamed once through gunzip. Reads must be
 * sequential; a position behind the stream (a re-read of an incomplete line) is served from `carry`.
 */
async function openGz(file: LogFile): Promise<LogSource> {
  const stream = createReadStream(file.path).pipe(createGunzip());
  const iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let carry: Buffer = Buffer.alloc(0);
  let carryStart = 0;
  let done = false;
  return {
    file,
    async read(buf, position) {
      // Keep from `position` on; everything before it was consumed.
      if (position > carryStart) {
        carry = carry.subarray(Math.min(position - carryStart, carry.length));
        carryStart = position;
      }
      while (!done && carryStart + carry.length < position + buf.length) {
        const next = await iterator.next();
        if (next.done) done = true;
        else carry = carry.length === 0 ? next.value : Buffer.concat([carry, next.value]);
        // Skip whole chunks that lie before the resume position.
        if (position > carryStart + carry.length) {
          carryStart += carry.length;
          carry = Buffer.alloc(0);
        } else if (position > carryStart) {
          carry = carry.subarray(position - carryStart);
          carryStart = position;
        }
      }
      return carry.copy(buf, 0, 0, Math.min(buf.length, carry.length));
    },
    async close() {
      stream.destroy();
    },
  };
}
