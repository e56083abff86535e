import type { Consumer, LogBatch, LogExporter } from './types.ts';

/**
 * Hands each batch to every exporter of a pipeline. The records array is shared (exporters must not
 * mutate it); the source's ack fires once, when the last exporter has acked its copy.
 * `consume` resolves when every exporter has taken the batch, so the slowest intake is the backpressure.
 */
export function createFanout(exporters: readonly LogExporter[]): Consumer<LogBatch> {
  if (exporters.length === 0) throw new Error('Cannot build a log pipeline: it has no exporter');
  if (exporters.length === 1) {
    const only = exporters[0]!;
    return { consume: (batch) => only.consume(batch) };
  }
  return {
    async consume(batch) {
      let remaining = exporters.length;
      const ack = (): void => {
        if (--remaining === 0) batch.ack();
      };
      const results = await Promise.allSettled(
        exporters.map((exporter) => {
          let acked = false;
          // Each copy acks at most once, whatever the exporter does.
          return exporter.consume({
            records: batch.records,
            ack: () => {
              if (acked) return;
              acked = true;
              ack();
            },
          });
        }),
      );
      for (const result of results) if (result.status === 'rejected') throw result.reason;
    },
  };
}
