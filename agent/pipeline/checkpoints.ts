import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StateError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Ack } from './types.ts';

/**
 * Per-source read positions, persisted under `<stateDir>/checkpoints/`. Writes are atomic
 * (write, fsync, rename) so a crash leaves the old or the new position, never a torn file.
 */
export interface CheckpointStore {
  /** The last position recorded for `key` (e.g. `json_file/<container id>`), or undefined. */
  get<T>(key: string): T | undefined;
  /** Records a position; persisted soon, coalescing writes for the same key. */
  set(key: string, value: unknown): void;
  delete(key: string): void;
  keys(): string[];
  /** Resolves when every recorded position is on disk. */
  flush(): Promise<void>;
}

/** A failed write is retried after this long (a full disk or a read-only remount may clear). */
const RETRY_MS = 1000;
const SUFFIX = '.json';

interface Slot {
  value: unknown;
  /** The value changed since the last write started (or the key was deleted). */
  dirty: boolean;
  deleted: boolean;
  /** The write or unlink in progress; later changes wait for it and are written once, coalesced. */
  writing: Promise<void> | undefined;
  retry: NodeJS.Timeout | undefined;
  error: unknown;
}

/** File names are the URI-encoded key, so `json_file/<id>` stays one flat file per key. */
const fileName = (key: string): string => `${encodeURIComponent(key)}${SUFFIX}`;

/**
 * Opens (creating it if needed) the checkpoint directory `dir` and loads every position in it.
 *
 * Each key is its own file, so a busy source rewrites only its own few bytes. While a write of a key is
 * in flight, later `set`s of that key only replace the pending value, and one write follows: the disk
 * sees at most one write per key per fsync, however often positions advance. The directory is not
 * fsynced after the rename: a rename lost in a power cut leaves the previous, older position, which
 * re-reads a little and never skips anything.
 */
export async function openCheckpointStore(dir: string, logger: Logger): Promise<CheckpointStore> {
  const log = logger.child({ component: 'checkpoints' });
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new StateError(
      `Cannot create the checkpoint directory ${dir}: ${(err as Error).message} (set state_dir to a writable directory)`,
      { cause: err },
    );
  }
  const slots = new Map<string, Slot>();
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (name.endsWith('.tmp')) {
      // Left by a crash between write and rename; the previous file is still intact.
      await unlink(path).catch(() => {});
      continue;
    }
    if (!name.endsWith(SUFFIX)) continue;
    const key = decodeURIComponent(name.slice(0, -SUFFIX.length));
    try {
      const value: unknown = JSON.parse(await readFile(path, 'utf8'));
      slots.set(key, {
        value,
        dirty: false,
        deleted: false,
        writing: undefined,
        retry: undefined,
        error: undefined,
      });
    } catch (err) {
      log.warn({ err, path }, 'Ignoring an unreadable checkpoint: its source starts as if it had none');
    }
  }

  const persist = async (key: string, slot: Slot): Promise<void> => {
    const path = join(dir, fileName(key));
    while (slot.dirty) {
      slot.dirty = false;
      // Snapshot now: set/delete may change the slot while this write awaits the disk.
      const text = slot.deleted ? undefined : JSON.stringify(slot.value);
      try {
        if (text === undefined) {
          await unlink(path).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') throw err;
          });
        } else {
          const tmp = `${path}.tmp`;
          const fh = await open(tmp, 'w');
          try {
            await fh.writeFile(text);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await rename(tmp, path);
        }
        if (slot.error !== undefined) log.info({ key }, 'Checkpoint writes recovered');
        slot.error = undefined;
      } catch (err) {
        if (slot.error === undefined)
          log.warn({ err, key }, `Cannot write checkpoint ${path}: retrying every ${RETRY_MS} ms`);
        slot.error = err;
        slot.dirty = true;
        slot.retry ??= setTimeout(() => {
          slot.retry = undefined;
          schedule(key, slot);
        }, RETRY_MS).unref();
        return;
      }
    }
    if (slot.deleted && slots.get(key) === slot) slots.delete(key);
  };

  const schedule = (key: string, slot: Slot): void => {
    if (slot.writing || slot.retry) return;
    slot.writing = persist(key, slot).finally(() => {
      slot.writing = undefined;
    });
  };

  return {
    get<T>(key: string): T | undefined {
      const slot = slots.get(key);
      return slot && !slot.deleted ? (slot.value as T) : undefined;
    },
    set(key, value) {
      let slot = slots.get(key);
      if (!slot) {
        slot = { value, dirty: true, deleted: false, writing: undefined, retry: undefined, error: undefined };
        slots.set(key, slot);
      }
      slot.value = value;
      slot.deleted = false;
      slot.dirty = true;
      schedule(key, slot);
    },
    delete(key) {
      const slot = slots.get(key);
      if (!slot || slot.deleted) return;
      slot.deleted = true;
      slot.value = undefined;
      slot.dirty = true;
      schedule(key, slot);
    },
    keys() {
      return [...slots].filter(([, slot]) => !slot.deleted).map(([key]) => key);
    },
    async flush() {
      // Loop: a write that finishes may find its key changed again and start another.
      for (;;) {
        for (const [key, slot] of slots) if (slot.dirty) schedule(key, slot);
        const writing = [...slots.values()].flatMap((s) => (s.writing ? [s.writing] : []));
        if (writing.length === 0) break;
        await Promise.all(writing);
      }
      const failed = [...slots].find(([, s]) => s.error !== undefined);
      if (failed)
        throw new StateError(
          `Cannot write checkpoint ${join(dir, fileName(failed[0]))}: ${(failed[1].error as Error).message}`,
          { cause: failed[1].error },
        );
    },
  };
}

/**
 * Hands out acks in read order and commits a position only when it and every position issued before
 * it are acked. Exporters may ack batches out of order (retries, several exporters); a checkpoint
 * must never pass a batch that is still in flight, or a crash would lose it.
 */
export interface OrderedAcks<P> {
  /** Registers the batch that ends at `position`; its ack may be called at any time, once. */
  issue(position: P): Ack;
  /** Issued batches not yet acked. */
  readonly pending: number;
}

export function createOrderedAcks<P>(commit: (position: P) => void): OrderedAcks<P> {
  // A ring would save the shifts, but the queue holds only the batches in flight (a handful).
  const queue: { position: P; done: boolean }[] = [];
  return {
    issue(position) {
      const slot = { position, done: false };
      queue.push(slot);
      return () => {
        if (slot.done) return;
        slot.done = true;
        let last: { position: P } | undefined;
        while (queue[0]?.done) last = queue.shift();
        if (last) commit(last.position);
      };
    },
    get pending() {
      return queue.filter((s) => !s.done).length;
    },
  };
}
