import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveStateDir } from '../../agent/agent.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';

/** A path that cannot become a directory, even for root: its parent is a character device. */
const UNWRITABLE = '/dev/null/labelcast';

test('a writable state_dir is used as configured, and created when missing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const wanted = join(dir, 'nested', 'state');
  assert.equal(await resolveStateDir(wanted, {}, silentLogger()), wanted);
  assert.ok((await stat(wanted)).isDirectory());
});

test('the default state_dir falls back to $XDG_STATE_HOME/labelcast when it is not writable', async (t) => {
  const xdg = await mkdtemp(join(tmpdir(), 'lc-xdg-'));
  t.after(() => rm(xdg, { recursive: true, force: true }));
  const got = await resolveStateDir(UNWRITABLE, { XDG_STATE_HOME: xdg }, silentLogger(), UNWRITABLE);
  assert.equal(got, join(xdg, 'labelcast'));
});

test('without XDG_STATE_HOME the fallback is ~/.local/state/labelcast', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lc-home-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const got = await resolveStateDir(UNWRITABLE, { HOME: home }, silentLogger(), UNWRITABLE);
  assert.equal(got, join(home, '.local', 'state', 'labelcast'));
});

test('an explicitly configured state_dir that is not writable is an error naming the fix', async () => {
  await assert.rejects(resolveStateDir(UNWRITABLE, {}, silentLogger()), {
    code: 'LABELCAST_ERR_STATE',
    message: /^Cannot use state_dir \/dev\/null\/labelcast: .*LABELCAST_STATE_DIR/,
  });
});
