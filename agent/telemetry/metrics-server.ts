import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Component } from '../pipeline/types.ts';

/** Serves the agent's registry as Prometheus text on `GET /metrics` at `listen` (HOST:PORT). */
export function createMetricsServer(
  listen: string,
  registry: Registry,
): Component & { address(): string | undefined } {
  const sep = listen.lastIndexOf(':');
  const host = listen.slice(0, sep).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(sep + 1));
  let server: Server | undefined;
  return {
    async start() {
      server = createServer((req, res) => {
        if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
          res.writeHead(404).end();
          return;
        }
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      });
      await new Promise<void>((resolve, reject) => {
        server?.once('error', reject);
        server?.listen(port, host, () => resolve());
      });
    },
    async shutdown() {
      const s = server;
      server = undefined;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    address() {
      const a = server?.address() as AddressInfo | null | undefined;
      return a ? `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : undefined;
    },
  };
}
