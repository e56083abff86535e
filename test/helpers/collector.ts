import type { Consumer, LogBatch, LogRecord } from '../../agent/pipeline/types.ts';

/**
 * A consumer that keeps every batch and record and acknowledges each batch at once, like a fast
 * exporter, unless `hold` says to keep that batch in flight (it then waits in `unacked`).
 */
export class Collector implements Consumer<LogBatch> {
  readonly batches: LogBatch[] = [];
  readonly records: LogRecord[] = [];
  readonly unacked: LogBatch[] = [];
  hold: (batch: LogBatch) => boolean = () => false;

  async consume(batch: LogBatch): Promise<void> {
    this.batches.push(batch);
    this.records.push(...batch.records);
    if (this.hold(batch)) this.unacked.push(batch);
    else batch.ack();
  }

  /** The records of one container, in arrival order. */
  of(containerId: string): LogRecord[] {
    return this.records.filter((r) => r.containerId === containerId);
  }

  bodies(containerId: string): string[] {
    return this.of(containerId).map((r) => r.body);
  }
}
