import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createOrderedAcks, openCheckpointStore } from '../../../agent/pipeline/checkpoints.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lc-ckpt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a position set and flushed is read back by a new store on the same directory', async (t) => {
  const dir = await tempDir(t);
  const store = await openCheckpointStore(dir, silentLogger());
  store.set('json_file/abc', { ino: 42, offset: 1234, time: '1700000000123456789' });
  store.set('docker_logs/def', { since: '1700000000.000000001' });
  await store.flush();
  const again = await openCheckpointStore(dir, silentLogger());
  assert.deepEqual(again.get('json_file/abc'), { ino: 42, offset: 1234, time: '1700000000123456789' });
  assert.deepEqual(again.get('docker_logs/def'), { since: '1700000000.000000001' });
  assert.deepEqual(again.keys().sort(), ['docker_logs/def', 'json_file/abc']);
});

test('many sets of one key coalesce into few writes and the last value wins', async (t) => {
  const dir = await tempDir(t);
  const store = await openCheckpointStore(dir, silentLogger());
  for (let i = 0; i <= 10_000; i++) store.set('json_file/busy', { offset: i });
  assert.deepEqual(store.get('json_file/busy'), { offset: 10_000 });
  await store.flush();
  const files = await readdir(dir);
  assert.deepEqual(files, ['json_file%2Fbusy.json']);
  assert.deepEqual(JSON.parse(await readFile(join(dir, files[0] ?? ''), 'utf8')), { offset: 10_000 });
});

test('a deleted key is gone from memory and from disk, even when deleted during its write', async (t) => {
  const dir = await tempDir(t);
  const store = await openCheckpointStore(dir, silentLogger());
  store.set('json_file/gone', { offset: 1 });
  store.delete('json_file/gone');
  store.set('json_file/kept', { offset: 2 });
  await store.flush();
  assert.equal(store.get('json_file/gone'), undefined);
  assert.deepEqual(store.keys(), ['json_file/kept']);
  assert.deepEqual(await readdir(dir), ['json_file%2Fkept.json']);
});

test('a temp file left by a crash is removed and a corrupt checkpoint is ignored on open', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'json_file%2Fa.json.tmp'), '{"offset":');
  await writeFile(join(dir, 'json_file%2Fb.json'), 'not json');
  await writeFile(join(dir, 'json_file%2Fc.json'), '{"offset":7}');
  const store = await openCheckpointStore(dir, silentLogger());
  assert.deepEqual(store.keys(), ['json_file/c']);
  assert.deepEqual((await readdir(dir)).sort(), ['json_file%2Fb.json', 'json_file%2Fc.json']);
});

test('flush rejects with a state error when the directory cannot be written', async (t) => {
  const dir = await tempDir(t);
  const store = await openCheckpointStore(dir, silentLogger());
  // A plain file where the directory was: fails for root too, unlike a chmod.
  await rm(dir, { recursive: true });
  await writeFile(dir, '');
  store.set('json_file/x', { offset: 1 });
  await assert.rejects(store.flush(), { code: 'LABELCAST_ERR_STATE', message: /Cannot write checkpoint/ });
});

test('ordered acks commit a position only when every earlier batch is acked', () => {
  const committed: number[] = [];
  const acks = createOrderedAcks<number>((p) => committed.push(p));
  const a = acks.issue(100);
  const b = acks.issue(200);
  const c = acks.issue(300);
  c();
  assert.deepEqual(committed, []);
  b();
  assert.deepEqual(committed, []);
  assert.equal(acks.pending, 1);
  a();
  assert.deepEqual(committed, [300]);
  a();
  assert.deepEqual(committed, [300]);
  const d = acks.issue(400);
  d();
  assert.deepEqual(committed, [300, 400]);
  assert.equal(acks.pending, 0);
});
