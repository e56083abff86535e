import { networkInterfaces } from 'node:os';
import type { Engine } from './dockerd.ts';

/**
 * A /24 in the benchmarking range 198.18.0.0/15 (RFC 2544) that no interface here uses yet, for a
 * user-defined bridge network on the private engine. Starts at 198.18.7.0/24; skips subnets held by
 * parallel test engines or left behind by a killed one (a second bridge with the same gateway address
 * would take the replies).
 */
export function freeTestSubnet(): { subnet: string; gateway: string } {
  const used = new Set<number>();
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      const m = /^198\.18\.(\d+)\./.exec(a.address);
      if (m) used.add(Number(m[1]));
    }
  }
  for (let x = 7; x < 255; x++) {
    if (!used.has(x)) return { subnet: `198.18.${x}.0/24`, gateway: `198.18.${x}.1` };
  }
  throw new Error('Cannot find a free 198.18.x.0/24 test subnet: remove leftover br-* test bridges');
}

/** Creates the bridge network `name` on the private engine in a free test subnet (see freeTestSubnet). */
export async function createTestNetwork(
  engine: Engine,
  name: string,
): Promise<{ subnet: string; gateway: string }> {
  const net = freeTestSubnet();
  await engine.docker(
    'network',
    'create',
    '--driver',
    'bridge',
    '--subnet',
    net.subnet,
    '--gateway',
    net.gateway,
    name,
  );
  return net;
}
