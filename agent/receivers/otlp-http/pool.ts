/**
 * Reusable request buffers. Each OTLP request needs a body buffer and, when enriched, a second one for
 * the spliced copy. Allocating those fresh (hundreds of KiB, hundreds of times a second) is external
 * memory that drives V8 into frequent mark-compact GCs: about a third of the agent's CPU in the
 * benchmark (npm run bench:otlp, docs/otlp-receiver.md). Buffers come back once nothing refers to them:
 * after the splice for a request body, after every exporter's ack for a forwarded one.
 */

const MIN_CLASS = 64 * 1024;
/** Larger bodies are rare; they are allocated and collected as usual. */
const MAX_CLASS = 4 * 1024 * 1024;
/** Buffers kept per size class: about the requests in flight at once. */
const PER_CLASS = 8;

export interface BufferPool {
  /** A buffer of at least `size` bytes (its contents are garbage). Give it back with `give` once unused. */
  take(size: number): Buffer;
  /** Returns a buffer from `take`; the caller must not touch it afterwards. Others are ignored. */
  give(buffer: Buffer): void;
}

function classOf(size: number): number {
  let c = MIN_CLASS;
  while (c < size) c *= 2;
  return c;
}

export function createBufferPool(): BufferPool {
  const free = new Map<number, Buffer[]>();
  return {
    take(size) {
      if (size > MAX_CLASS) return Buffer.allocUnsafeSlow(size);
      const c = classOf(size);
      return free.get(c)?.pop() ?? Buffer.allocUnsafeSlow(c);
    },
    give(buffer) {
      const c = buffer.length;
      if (c < MIN_CLASS || c > MAX_CLASS || (c & (c - 1)) !== 0 || buffer.byteOffset !== 0) return;
      let list = free.get(c);
      if (!list) {
        list = [];
        free.set(c, list);
      }
      if (list.length < PER_CLASS) list.push(buffer);
    },
  };
}
