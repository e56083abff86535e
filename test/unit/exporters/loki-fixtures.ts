import type { Attributes, ContainerEntry } from '../../../agent/metadata/types.ts';
import type { LogRecord, LogStream } from '../../../agent/pipeline/types.ts';
import { entry } from '../pipeline/fixtures.ts';

export const APP_ID = '4f1c2b3a'.repeat(8);

/** The attributes the mapping gives a container of labelcast-test/app:2.3.1 (compose-less, named `api-1`). */
export const APP_ATTRIBUTES: Attributes = {
  'container.id': APP_ID,
  'container.name': 'api-1',
  'container.image.name': 'labelcast-test/app',
  'container.image.tags': ['2.3.1'],
  'container.image.id': 'sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
  'container.runtime.name': 'docker',
  'service.name': 'api',
  'service.version': '2.3.1',
  'vcs.ref.head.revision': '3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39',
  'vcs.repository.url.full': 'https://github.com/acme/api',
  'support.contact': 'oncall-api@example.com',
  team: 'payments',
  'container.label.io.labelcast.team': 'payments',
  'container.label.com.example.db-password': '[REDACTED]',
};

/** The structured metadata (non-stream attributes, Loki-named) the default label policy gives APP_ATTRIBUTES. */
export const APP_STREAM_METADATA: [string, string][] = [
  ['container_id', APP_ID],
  ['container_image_name', 'labelcast-test/app'],
  ['container_image_tags', '["2.3.1"]'],
  ['container_image_id', 'sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'],
  ['container_runtime_name', 'docker'],
  ['service_version', '2.3.1'],
  ['vcs_ref_head_revision', '3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39'],
  ['vcs_repository_url_full', 'https://github.com/acme/api'],
  ['container_label_io_labelcast_team', 'payments'],
  ['container_label_com_example_db_password', '[REDACTED]'],
];

export function containerEntry(attributes: Attributes = APP_ATTRIBUTES, id = APP_ID): ContainerEntry {
  return entry(id, {
    name: String(attributes['container.name'] ?? ''),
    imageId: 'sha256:9f86',
    startedAt: '2026-12-04T15:00:00Z',
    attributes,
  });
}

export function logRecord(
  body: string,
  timeUnixNano: bigint,
  container: ContainerEntry | undefined,
  extra: Partial<LogRecord> = {},
): LogRecord {
  return {
    timeUnixNano,
    observedUnixNano: timeUnixNano + 1000n,
    body,
    stream: 'stdout' as LogStream,
    severityNumber: 0,
    severityText: undefined,
    attributes: undefined,
    containerId: container?.id ?? APP_ID,
    container,
    ...extra,
  };
}
