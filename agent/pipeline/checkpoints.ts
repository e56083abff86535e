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
