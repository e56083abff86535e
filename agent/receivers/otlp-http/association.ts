import type { ContainerEntry, MetadataStore } from '../../metadata/types.ts';
import type { ResourceAttributes } from './splice.ts';

/**
 * Which container sent this Resource? Ordered rules, like the Collector's `pod_association`; the first
 * rule that matches wins:
 * - `container.id`: the resource attribute, full or 12-char short id (the SDKs' container detector);
 * - `host.name`: a container's hostname or short id (Docker's default hostname);
 * - `peer_ip`: the connection's source address among the containers' network IPs;
 * - `target`: a fixed container (sidecar mode), found once and followed across restarts.
 */
export type AssociationRule = 'container.id' | 'host.name' | 'peer_ip' | 'target';

export const ASSOCIATION_RULES: readonly AssociationRule[] = [
  'container.id',
  'host.name',
  'peer_ip',
  'target',
];

/** What one request offers for association besides its Resource. */
export interface RequestContext {
  /** The TCP peer address, IPv4-mapped IPv6 already unwrapped. */
  readonly peerIp: string | undefined;
}

export interface Associator {
  /** Returns the container and the rule that matched, or undefined. Lookups are cache reads only. */
  associate(
    resource: ResourceAttributes,
    request: RequestContext,
  ): { entry: ContainerEntry; rule: AssociationRule } | undefined;
}

const SHORT_ID = /^[0-9a-f]{12}$/;

/** `::ffff:198.18.7.2` → `198.18.7.2` */
export function unwrapMappedIp(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

export function createAssociator(
  store: MetadataStore,
  rules: readonly AssociationRule[],
  target: () => ContainerEntry | undefined,
): Associator {
  const byRule: Record<
    AssociationRule,
    (r: ResourceAttributes, c: RequestContext) => ContainerEntry | undefined
  > = {
    'container.id': (r) => {
      const id = r.get('container.id');
      return id ? store.get(id) : undefined;
    },
    'host.name': (r) => {
      const host = r.get('host.name');
      if (!host) return undefined;
      return store.byHostname(host) ?? (SHORT_ID.test(host) ? store.get(host) : undefined);
    },
    peer_ip: (_r, c) => (c.peerIp ? store.byIp(c.peerIp) : undefined),
    target: () => target(),
  };
  const ordered = rules.map((rule) => [rule, byRule[rule]] as const);
  return {
    associate(resource, request) {
      for (const [rule, match] of ordered) {
        const entry = match(resource, request);
        if (entry) return { entry, rule };
      }
      return undefined;
    },
  };
}
