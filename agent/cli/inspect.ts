import type { Command } from 'commander';
import type Docker from 'dockerode';
import { NotFoundError } from '../errors.ts';
import { createMetadata } from '../metadata/index.ts';
import { createMapper, type Mapper } from '../metadata/mapping.ts';
import type { Attributes, ContainerEntry, LabelOrigin } from '../metadata/types.ts';
import { createMetricsRegistry } from '../telemetry/metrics.ts';
import { type CliContext, openDocker } from './context.ts';
import { cellValue, renderJson, renderPairs, renderTable } from './output.ts';

/** One container as `labelcast inspect --json` prints it. Redacted label values read `[REDACTED]`. */
export interface ContainerReport {
  id: string;
  name: string;
  hostname: string;
  running: boolean;
  startedAt: string;
  image: { ref: string; id: string; tags: string[]; created: string | undefined };
  /** Exactly the resource attributes the agent attaches to this container's logs and spans. */
  attributes: Attributes;
  /** Each effective label with its value and where it came from. */
  labels: Record<string, { value: string; origin: LabelOrigin }>;
}

/** `labelcast inspect <name|id>`: a container's attributes, and each label's value and provenance. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .description(
      "show a container's resource attributes and where each label came from (container, image, base image)",
    )
    .argument('<container>', 'container name, full id or unique id prefix')
    .option('-c, --config <file>', 'YAML config file (default: $LABELCAST_CONFIG, else built-in defaults)')
    .option('--json', 'print JSON instead of tables')
    .action(async (query: string, opts: { config?: string; json?: boolean }) => {
      const config = ctx.loadConfig(opts.config);
      const log = ctx.logger(config).child({ component: 'cli/inspect' });
      const docker = await openDocker(config, ctx.env, log);
      const mapper = createMapper(config.mapping, (msg) => log.warn(msg));
      // One-shot: the store inspects on demand (container, image, image history); no event watcher.
      const { store } = createMetadata({
        docker,
        mapper,
        config: config.metadata,
        logger: log,
        metrics: createMetricsRegistry(),
      });
      const id = await findContainer(docker, query);
      const entry = await store.resolve(id);
      if (!entry)
        throw new NotFoundError(`Cannot inspect container ${JSON.stringify(query)}: it was removed`);
      const report = containerReport(entry, mapper);
      ctx.write(opts.json ? renderJson(report) : reportText(report));
    });
}

/**
 * Finds a container (running or not) by exact name, full id or unique id prefix, as `docker inspect`
 * does. Throws NotFoundError when nothing or more than one container matches.
 */
export async function findContainer(docker: Docker, query: string): Promise<string> {
  const q = query.replace(/^\//, '');
  const all = await docker.listContainers({ all: true });
  const exact = all.find((c) => c.Id === q || c.Names.some((n) => n.replace(/^\//, '') === q));
  if (exact) return exact.Id;
  const byPrefix = /^[0-9a-f]+$/.test(q) ? all.filter((c) => c.Id.startsWith(q)) : [];
  if (byPrefix.length === 1) return (byPrefix[0] as (typeof all)[number]).Id;
  if (byPrefix.length > 1) {
    throw new NotFoundError(
      `Cannot inspect container ${JSON.stringify(query)}: the id prefix matches ${byPrefix.length} containers (give more characters or the name)`,
    );
  }
  throw new NotFoundError(
    `Cannot inspect container ${JSON.stringify(query)}: no such container (see labelcast containers, or docker ps -a)`,
  );
}

/** The report for one entry; label values pass through the mapper's redaction and length cap. */
export function containerReport(entry: ContainerEntry, mapper: Mapper): ContainerReport {
  const shown = mapper.presentLabels(entry.labels);
  const labels: ContainerReport['labels'] = {};
  for (const [key, value] of Object.entries(shown)) {
    labels[key] = { value, origin: entry.labelOrigins[key] ?? 'container' };
  }
  return {
    id: entry.id,
    name: entry.name,
    hostname: entry.hostname,
    running: entry.running,
    startedAt: entry.startedAt,
    image: {
      ref: entry.imageRef,
      id: entry.imageId,
      tags: [...(entry.image?.repoTags ?? [])],
      created: entry.image?.created,
    },
    attributes: entry.attributes,
    labels,
  };
}

/** Three blocks: the container, its attributes, its labels with their origin. */
export function reportText(report: ContainerReport): string {
  const head = renderPairs([
    ['CONTAINER', report.name],
    ['ID', report.id],
    ['IMAGE', `${report.image.ref} (${report.image.id})`],
    ['STATE', report.running ? `running since ${report.startedAt}` : 'not running'],
  ]);
  const attributes = renderTable(
    ['ATTRIBUTE', 'VALUE'],
    Object.entries(report.attributes).map(([k, v]) => [k, cellValue(v)]),
  );
  const labels = renderTable(
    ['LABEL', 'VALUE', 'ORIGIN'],
    Object.entries(report.labels).map(([k, { value, origin }]) => [k, value, origin]),
  );
  return `${head}\n${attributes}\n${labels}`;
}
