import { Registry } from 'prom-client';

/**
 * The agent's one metrics registry. Components receive it through their deps and register their own
 * counters on it with the `labelcast_` prefix; label values must come from a bounded set.
 */
export function createMetricsRegistry(): Registry {
  return new Registry();
}
export type { Registry } from 'prom-client';
