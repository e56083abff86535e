import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../../agent/config/load.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
const INSTALL = 'apt-get install -y prometheus prometheus-alertmanager';

function tool(name: string): string {
  const path = `/usr/bin/${name}`;
  assert.ok(existsSync(path), `${name} is needed to check the deploy/ examples (run: ${INSTALL})`);
  return path;
}

const exampleConfigs = [
  ...readdirSync(join(root, 'config/examples')).map((f) => join('config/examples', f)),
  'config/labelcast.yaml',
  'deploy/compose/host-agent/labelcast.yaml',
  'deploy/compose/socket-proxy/labelcast.yaml',
].filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'));

for (const file of exampleConfigs) {
  test(`the shipped config ${file} is valid`, () => {
    const config = loadConfig({ file: join(root, file), env: {} });
    assert.ok(Object.keys(config.pipelines).length > 0, 'it defines at least one pipeline');
  });
}

test('the Kubernetes ConfigMap carries a valid labelcast config', async (t) => {
  const docs = parseAllDocuments(readFileSync(join(root, 'deploy/kubernetes/labelcast.yaml'), 'utf8'));
  const configMap = docs.map((d) => d.toJSON()).find((d) => d?.kind === 'ConfigMap');
  const dir = await mkdtemp(join(tmpdir(), 'lc-k8s-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'labelcast.yaml');
  await writeFile(file, configMap.data['labelcast.yaml']);
  const config = loadConfig({ file, env: {} });
  assert.deepEqual(config.pipelines.logs?.exporters, ['loki']);
});

test('Alertmanager routes a container alert to the contact named in its support_contact label', async () => {
  const amtool = tool('amtool');
  const file = join(root, 'deploy/alertmanager/alertmanager.yml');
  await run(amtool, ['check-config', file]);
  const route = async (...labels: string[]) =>
    (await run(amtool, ['config', 'routes', 'test', `--config.file=${file}`, ...labels])).stdout.trim();
  assert.equal(
    await route('alertname=ContainerErrorFlood', 'support_contact=oncall-api@example.com'),
    'contact-email',
  );
  assert.equal(
    await route('alertname=ContainerErrorFlood', 'support_contact=team-payments'),
    'oncall-webhook',
  );
  assert.equal(await route('alertname=ContainerErrorFlood'), 'platform-fallback');
});

test('the Prometheus scrape config and agent alert rules are valid', async () => {
  const promtool = tool('promtool');
  await run(promtool, ['check', 'rules', join(root, 'deploy/prometheus/labelcast-alerts.yml')]);
  await run(promtool, ['check', 'config', join(root, 'deploy/prometheus/prometheus.yml')]);
});

test('the Loki ruler rules group alerts by the stream labels labelcast sends', () => {
  const rules = parse(readFileSync(join(root, 'deploy/loki/rules/labelcast.yaml'), 'utf8'));
  for (const rule of rules.groups[0].rules) {
    assert.match(rule.expr, /sum by \(support_contact, container_name, service_name\)/);
  }
});
