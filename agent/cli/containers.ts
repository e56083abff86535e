import type { Command } from 'commander';
import type Docker from 'dockerode';
import { createMapper, type Mapper } from '../metadata/mapping.ts';
import { type CliContext, openDocker } from './context.ts';
import { cellValue, renderJson, renderTable, shortId } from './output.ts';

/** One running container as `labelcast containers --json` prints it. */
export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  imageId: string;
  revision: string | undefined;
  source: string | undefined;
  contact: string | undefined;
  service: string | undefined;
  version: string | undefined;
}

/** `labelcast containers`: running containers with the code and people behind each. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('containers')
    .description('list running containers with image, revision, source and contact')
    .option('-c, --config <file>', 'YAML config file (default: $LABELCAST_CONFIG, else built-in defaults)')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { config?: string; json?: boolean }) => {
      const config = ctx.loadConfig(opts.config);
      const log = ctx.logger(config).child({ component: 'cli/containers' });
      const docker = await openDocker(config, ctx.env, log);
      const containers = await listRunning(docker, createMapper(config.mapping));
      log.debug({ containers: containers.length }, 'listed containers');
      ctx.write(opts.json ? renderJson(containers) : containersTable(containers));
    });
}

/**
 * One list call: the list's `Labels` are the effective labels (image overlaid by container), which is
 * all the mapper needs for revision, source and contact.
 */
export async function listRunning(docker: Docker, mapper: Mapper): Promise<ContainerSummary[]> {
  const infos = await docker.listContainers();
  return infos
    .map((info) => {
      const name = (info.Names[0] ?? '').replace(/^\//, '');
      const attributes = mapper.attributes({
        id: info.Id,
        name,
        imageRef: info.Image,
        imageId: info.ImageID,
        image: undefined,
        labels: info.Labels ?? {},
      });
      const str = (key: string): string | undefined => cellValue(attributes[key]);
      return {
        id: info.Id,
        name,
        image: info.Image,
        imageId: info.ImageID,
        revision: str('vcs.ref.head.revision'),
        source: str('vcs.repository.url.full'),
        contact: str('support.contact'),
        service: str('service.name'),
        version: str('service.version'),
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

export function containersTable(containers: readonly ContainerSummary[]): string {
  return renderTable(
    ['NAME', 'CONTAINER ID', 'IMAGE', 'REVISION', 'SOURCE', 'CONTACT'],
    containers.map((c) => [c.name, shortId(c.id), c.image, c.revision, c.source, c.contact]),
  );
}
