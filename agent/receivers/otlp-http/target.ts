import { readlinkSync } from 'node:fs';
import type Docker from 'dockerode';
import type { ContainerEntry, MetadataStore } from '../../metadata/types.ts';
import { detectOwnContainerId } from '../../pipeline/enrich.ts';

/** Reads a `/proc/<pid>/ns/net` link (`net:[4026531840]`); undefined when not permitted or gone. */
export type ReadNetns = (pid: number | 'self') => string | undefined;

const readNetnsFromProc: ReadNetns = (pid) => {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
};

export interface TargetOptions {
  readonly store: MetadataStore;
  /** Used once per container change to read the agent's own `HostConfig.NetworkMode`. */
  readonly docker?: Docker | undefined;
  readonly readNetns?: ReadNetns;
  readonly ownContainerId?: () => string | undefined;
}

export interface Target {
  /** The target container now; a cache read, refreshed when the store reports a change. */
  (): ContainerEntry | undefined;
  /** Stops following store changes. */
  close(): void;
}

/**
 * The fixed container of the `target` rule, from a config spec (see config.ts). The answer is cached
 * and recomputed on the next request after any container change, so a restarted app container (new
 * id, same name or label) is followed.
 */
export function createTarget(spec: string | undefined, options: TargetOptions): Target {
  const { store } = options;
  if (spec === undefined) return Object.assign(() => undefined, { close() {} });
  const readNetns = options.readNetns ?? readNetnsFromProc;
  const ownId = options.ownContainerId ?? (() => detectOwnContainerId());
  let find: () => ContainerEntry | undefined;
  if (spec.startsWith('name:')) {
    const name = spec.slice(5).replace(/^\//, '');
    find = () => store.byName(name);
  } else if (spec.startsWith('id:')) {
    const id = spec.slice(3);
    find = () => {
      const entry = store.get(id.slice(0, 12));
      return entry?.id.startsWith(id) ? entry : undefined;
    };
  } else if (spec.startsWith('label:')) {
    const [key = '', ...rest] = spec.slice(6).split('=');
    const value = rest.join('=');
    find = () => store.running().find((c) => c.labels[key] === value);
  } else {
    find = () => sharedNetnsContainer(store, readNetns, ownId, networkModeOf);
  }

  /** The agent's own `container:<id>` network mode, read once per own container id. */
  const networkModes = new Map<string, string | undefined>();
  function networkModeOf(id: string): string | undefined {
    if (!networkModes.has(id)) {
      networkModes.set(id, undefined);
      void options.docker
        ?.getContainer(id)
        .inspect()
        .then((info) => {
          networkModes.set(id, info.HostConfig?.NetworkMode);
          stale = true;
        })
        .catch(() => undefined);
    }
    return networkModes.get(id);
  }

  let cached: ContainerEntry | undefined;
  let stale = true;
  const unsubscribe = store.subscribe(() => {
    stale = true;
  });
  const target = (): ContainerEntry | undefined => {
    if (stale || cached?.removedAt !== undefined || (cached && !cached.running)) {
      stale = false;
      cached = find();
    }
    return cached;
  };
  return Object.assign(target, { close: unsubscribe });
}

/**
 * The container whose network namespace the agent shares: its own container's `container:<id>`
 * network mode when the agent runs in a container, else the running container whose
 * `/proc/<pid>/ns/net` is the agent's own (root, or the agent started with `nsenter -n`).
 */
function sharedNetnsContainer(
  store: MetadataStore,
  readNetns: ReadNetns,
  ownId: () => string | undefined,
  networkModeOf: (id: string) => string | undefined,
): ContainerEntry | undefined {
  const own = ownId();
  if (own !== undefined) {
    const mode = networkModeOf(own);
    if (mode?.startsWith('container:')) {
      const entry = store.get(mode.slice(10).slice(0, 12));
      if (entry) return entry;
    }
  }
  const mine = readNetns('self');
  // On the host's own network namespace, `--network host` containers share it too: that is no sidecar.
  if (mine === undefined || (own === undefined && readNetns(1) === mine)) return undefined;
  for (const c of store.running()) {
    if (c.id === own || c.pid <= 0) continue;
    if (readNetns(c.pid) === mine) return c;
  }
  return undefined;
}
