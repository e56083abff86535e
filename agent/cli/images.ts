import type { Command } from 'commander';
import type Docker from 'dockerode';
import { createMapper, type Mapper } from '../metadata/mapping.ts';
import type { CliContext } from './context.ts';
import { openDocker } from './context.ts';
import { renderJson, renderTable, shortId } from './output.ts';

/** One local image as `labelcast images --json` prints it. Label values are already redacted. */
export interface ImageSummary {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** RFC 3339, from the engine's `Created` (seconds). */
  created: string;
  size: number;
  title: string | undefined;
  version: string | undefined;
  revision: string | undefined;
  source: string | undefined;
  contact: string | undefined;
  labels: Record<string, string>;
}

/** `labelcast images`: local images, untagged ones too, with the code and people behind each. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('images')
    .description(
      'list local images, including untagged <none> ones, with title, revision, source and contact',
    )
    .option('-c, --config <file>', 'YAML config file (default: $LABELCAST_CONFIG, else built-in defaults)')
    .option('-a, --all', 'also list intermediate images (build layers)')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { config?: string; all?: boolean; json?: boolean }) => {
      const config = ctx.loadConfig(opts.config);
      const log = ctx.logger(config).child({ component: 'cli/images' });
      const docker = await openDocker(config, ctx.env, log);
      const images = await listImages(docker, createMapper(config.mapping), opts.all === true);
      log.debug({ images: images.length }, 'listed images');
      ctx.write(opts.json ? renderJson(images) : imagesTable(images));
    });
}

/** Lists images newest first, deriving title/revision/source/contact with the same mapper as the agent. */
export async function listImages(docker: Docker, mapper: Mapper, all: boolean): Promise<ImageSummary[]> {
  const infos = await docker.listImages({ all });
  return infos
    .sort((a, b) => b.Created - a.Created || a.Id.localeCompare(b.Id))
    .map((info) => {
      // Older engines report an untagged image as `<none>:<none>` rather than no tags.
      const repoTags = (info.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
      const repoDigests = (info.RepoDigests ?? []).filter((d) => d !== '<none>@<none>');
      const labels = info.Labels ?? {};
      const attrs = mapper.attributes({
        id: '',
        name: '',
        imageRef: repoTags[0] ?? info.Id,
        imageId: info.Id,
        image: undefined,
        labels,
      });
      const str = (key: string): string | undefined => {
        const v = attrs[key];
        return typeof v === 'string' ? v : undefined;
      };
      return {
        id: info.Id,
        repoTags,
        repoDigests,
        created: new Date(info.Created * 1000).toISOString().replace('.000Z', 'Z'),
        size: info.Size,
        title: str('service.name'),
        version: str('service.version'),
        revision: str('vcs.ref.head.revision'),
        source: str('vcs.repository.url.full'),
        contact: str('support.contact'),
        labels: mapper.presentLabels(labels),
      };
    });
}

/** One row per tag, as `docker images` prints; an untagged image is one `<none>` row. */
export function imagesTable(images: readonly ImageSummary[]): string {
  const rows = images.flatMap((img) => {
    const refs = img.repoTags.length > 0 ? img.repoTags.map(splitTag) : [['<none>', '<none>'] as const];
    return refs.map(([repo, tag]) => [
      repo,
      tag,
      shortId(img.id),
      img.created,
      img.title,
      img.revision,
      img.source,
      img.contact,
    ]);
  });
  return renderTable(
    ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'TITLE', 'REVISION', 'SOURCE', 'CONTACT'],
    rows,
  );
}

/** `host:5000/a/b:tag` → [`host:5000/a/b`, `tag`]: the tag is after the last `:` that follows the last `/`. */
function splitTag(repoTag: string): readonly [string, string] {
  const colon = repoTag.lastIndexOf(':');
  if (colon > repoTag.lastIndexOf('/')) return [repoTag.slice(0, colon), repoTag.slice(colon + 1)];
  return [repoTag, '<none>'];
}
