import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerChange, ContainerEntry, MetadataStore } from '../../../../agent/metadata/types.ts';
import { createTarget } from '../../../../agent/receivers/otlp-http/target.ts';

function container(n: number, extra: Partial<ContainerEntry> = {}): ContainerEntry {
  const id = String(n).repeat(64);
  return {
    id,
    shortId: id.slice(0, 12),
    name: `c${n}`,
    labels: {},
    running: true,
    pid: 1000 + n,
    removedAt: undefined,
    ...extra,
  } as unknown as ContainerEntry;
}

function storeOf(initial: ContainerEntry[]) {
  let entries = initial;
  const listeners = new Set<(c: ContainerChange) => void>();
  const store: MetadataStore = {
    get: (id) => entries.find((e) => e.id.startsWith(id)),
    resolve: async (id) => entries.find((e) => e.id.startsWith(id)),
    byName: (name) => entries.find((e) => e.name === name),
    byHostname: () => undefined,
    byIp: () => undefined,
    running: () => entries.filter((e) => e.running),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return {
    store,
    replace(next: ContainerEntry[]) {
      entries = next;
      for (const l of listeners) l({ type: 'start', entry: next[0] as ContainerEntry });
    },
    listeners,
  };
}

test('a name target follows a restarted container with the same name', () => {
  const s = storeOf([container(1, { name: 'app' }), container(2)]);
  const target = createTarget('name:app', { store: s.store });
  assert.equal(target()?.id, '1'.repeat(64));
  s.replace([container(3, { name: 'app' }), container(2)]);
  assert.equal(target()?.id, '3'.repeat(64));
  target.close();
  assert.equal(s.listeners.size, 0);
});

test('an id target matches a short or full id prefix', () => {
  const s = storeOf([container(1), container(2)]);
  assert.equal(createTarget(`id:${'2'.repeat(12)}`, { store: s.store })()?.id, '2'.repeat(64));
  assert.equal(createTarget(`id:${'2'.repeat(64)}`, { store: s.store })()?.id, '2'.repeat(64));
  assert.equal(createTarget(`id:${'9'.repeat(12)}`, { store: s.store })(), undefined);
});

test('a label target picks the running container carrying key=value', () => {
  const s = storeOf([
    container(1, { labels: { role: 'db' } }),
    container(2, { labels: { role: 'app=web' } }),
  ]);
  assert.equal(createTarget('label:role=app=web', { store: s.store })()?.id, '2'.repeat(64));
});

test('the network_namespace target is the running container whose /proc/<pid>/ns/net is the agent own', () => {
  const s = storeOf([container(1), container(2)]);
  const netns: Record<string, string> = {
    self: 'net:[42]',
    '1': 'net:[1]',
    '1001': 'net:[7]',
    '1002': 'net:[42]',
  };
  const target = createTarget('network_namespace', {
    store: s.store,
    readNetns: (pid) => netns[String(pid)],
    ownContainerId: () => undefined,
  });
  assert.equal(target()?.id, '2'.repeat(64));
});

test('on the host network namespace no container is a sidecar target, not even --network host ones', () => {
  const s = storeOf([container(1)]);
  const target = createTarget('network_namespace', {
    store: s.store,
    readNetns: () => 'net:[1]',
    ownContainerId: () => undefined,
  });
  assert.equal(target(), undefined);
});

test('in a container, its container:<id> network mode names the target', async () => {
  const s = storeOf([container(1), container(2)]);
  const docker = {
    getContainer: (id: string) => ({
      inspect: async () => ({
        HostConfig: { NetworkMode: id === '1'.repeat(64) ? `container:${'2'.repeat(64)}` : 'bridge' },
      }),
    }),
  };
  const target = createTarget('network_namespace', {
    store: s.store,
    docker: docker as never,
    readNetns: () => undefined,
    ownContainerId: () => '1'.repeat(64),
  });
  assert.equal(target(), undefined, 'the first call starts the inspect');
  await new Promise((r) => setImmediate(r));
  assert.equal(target()?.id, '2'.repeat(64));
});

test('no target configured matches nothing', () => {
  assert.equal(createTarget(undefined, { store: storeOf([container(1)]).store })(), undefined);
});
