import type { Attributes, ContainerEntry } from '../../../agent/metadata/types.ts';
import type { LogRecord, LogStream } from '../../../agent/pipeline/types.ts';

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

export function containerEntry(attributes: Attributes = APP_ATTRIBUTES, id = APP_ID): ContainerEntry {
  return {
    id,
    shortId: id.slice(0, 12),
    name: String(attributes['container.name'] ?? ''),
    hostname: id.slice(0, 12),
    imageRef: 'labelcast-test/app:2.3.1',
    imageId: 'sha256:9f86',
    image: undefined,
    labels: {},
    labelOrigins: {},
    ips: [],
    running: true,
    pid: 1,
    tty: false,
    logPath: '',
    logDriver: 'json-file',
    startedAt: '2026-12-04T15:00:00Z',
    attributes,
    settings: { ignore: false, multilineStart: undefined },
    removedAt: undefined,
  };
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
