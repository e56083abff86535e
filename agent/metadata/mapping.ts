/**
 * Labels → OpenTelemetry resource attributes (docs/mapping.md has the table). Pure: no I/O, no clock.
 * Computed once per container version; the store keeps the result with the entry.
 */
import picomatch from 'picomatch';
import type { MappingConfig } from './config.ts';
import type { Attributes, AttributeValue, ContainerSettings, ImageEntry } from './types.ts';

export interface MappingInput {
  id: string;
  name: string;
  imageRef: string;
  imageId: string;
  image: ImageEntry | undefined;
  labels: Readonly<Record<string, string>>;
}

export interface Mapper {
  /** The container's full resource attribute set, computed once per container version. */
  attributes(input: MappingInput): Attributes;
  /** io.labelcast.ignore / io.labelcast.multiline.start (an invalid regex => undefined, reported via onWarning) */
  settings(labels: Readonly<Record<string, string>>): ContainerSettings;
  isRedacted(labelKey: string): boolean;
  /** Labels as they may be shown/logged: redacted values replaced by '[REDACTED]', long values cut. */
  presentLabels(labels: Readonly<Record<string, string>>): Record<string, string>;
}

export const REDACTED = '[REDACTED]';
export const IGNORE_LABEL = 'io.labelcast.ignore';
export const MULTILINE_START_LABEL = 'io.labelcast.multiline.start';

const OCI = 'org.opencontainers.image.';
const LS = 'org.label-schema.';
const COMPOSE_PROJECT = 'com.docker.compose.project';
const COMPOSE_SERVICE = 'com.docker.compose.service';
const SWARM_SERVICE = 'com.docker.swarm.service.name';
const STACK_NAMESPACE = 'com.docker.stack.namespace';

/** Source labels in precedence order (REFERENCE.md §2); the first present, non-redacted one wins. */
const REVISION_KEYS = [`${OCI}revision`, `${LS}vcs-ref`];
const SOURCE_KEYS = [`${OCI}source`, `${LS}vcs-url`];
const VERSION_KEYS = [`${OCI}version`, `${LS}version`];
const TITLE_KEYS = [`${OCI}title`, `${LS}name`];
const NAMESPACE_KEYS = [COMPOSE_PROJECT, STACK_NAMESPACE];

/** Decisions per label key are cached; the cache is cleared when it grows past this (keys are few in practice). */
const KEY_CACHE_MAX = 10_000;
const REGEX_CACHE_MAX = 256;

const ID_REF = /^(?:sha256:)?[0-9a-f]{64}$/;

/**
 * Splits an image reference into repository name, tag and digest:
 * `host:port/path/name:tag@sha256:…` → name `host:port/path/name`. A bare image id (`sha256:…` or 64 hex) has
 * no name: `name` is ''. The name is kept as written (no `docker.io/library/` added).
 */
export function parseImageReference(ref: string): {
  name: string;
  tag: string | undefined;
  digest: string | undefined;
} {
  const trimmed = ref.trim();
  if (ID_REF.test(trimmed)) {
    return {
      name: '',
      tag: undefined,
      digest: trimmed.startsWith('sha256:') ? trimmed : `sha256:${trimmed}`,
    };
  }
  let rest = trimmed;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1) || undefined;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  // A ':' after the last '/' separates the tag; one before it is a registry port.
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1) || undefined;
    rest = rest.slice(0, colon);
  }
  return { name: rest, tag, digest };
}

/** Docker Hub names in their short form (`docker.io/library/busybox` → `busybox`), to compare with RepoTags. */
function familiarName(name: string): string {
  let n = name;
  for (const prefix of ['docker.io/', 'index.docker.io/', 'registry-1.docker.io/']) {
    if (n.startsWith(prefix)) {
      n = n.slice(prefix.length);
      break;
    }
  }
  return n.startsWith('library/') ? n.slice('library/'.length) : n;
}

/**
 * Canonical repository URL: `https://host/path` without credentials, `.git`, a trailing '/', or a `#ref:subdir`
 * fragment; `git@host:org/repo` and `ssh://`/`git://` forms become https. Returns undefined when no host and path
 * can be found.
 */
export function normalizeRepositoryUrl(url: string): string | undefined {
  let s = url.trim();
  if (s === '') return undefined;
  const hash = s.indexOf('#');
  if (hash !== -1) s = s.slice(0, hash);
  if (s.startsWith('git+')) s = s.slice(4);
  let host: string;
  let path: string;
  const scp = /^(?:[^@/:\s]+@)?([^@/:\s]+):(?!\/\/)(.+)$/.exec(s);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    host = scp[1] as string;
    path = scp[2] as string;
  } else {
    let parsed: URL;
    try {
      parsed = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `https://${s}`);
    } catch {
      return undefined;
    }
    if (!['http:', 'https:', 'ssh:', 'git:', 'git+ssh:'].includes(parsed.protocol)) return undefined;
    host = parsed.hostname;
    // An explicit https port is kept (self-hosted forges); ssh/git ports mean nothing over https.
    if (parsed.port && (parsed.protocol === 'https:' || parsed.protocol === 'http:'))
      host += `:${parsed.port}`;
    path = parsed.pathname;
  }
  path = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (path.endsWith('.git')) path = path.slice(0, -4);
  path = path.replace(/\/+$/, '');
  if (host === '' || path === '' || (!host.includes('.') && !host.includes(':') && host !== 'localhost')) {
    return undefined;
  }
  return `https://${host.toLowerCase()}/${path}`;
}

function providerOf(host: string): string | undefined {
  const h = host.split(':')[0] as string;
  if (h === 'github.com' || h.endsWith('.github.com') || h.includes('github')) return 'github';
  if (h.includes('gitlab')) return 'gitlab';
  if (h.includes('bitbucket')) return 'bitbucket';
  if (h.includes('gitea') || h === 'codeberg.org') return 'gitea';
  return undefined;
}

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^/\s@:]+:[^/\s@]+@/gi;

/** `https://user:token@host/…` → `https://[REDACTED]@host/…`: a CI often bakes a token into a source URL. */
function hideUrlCredentials(value: string): string {
  return value.includes('://') && value.includes('@')
    ? value.replace(URL_CREDENTIALS, `$1${REDACTED}@`)
    : value;
}

/** Cuts to `max` code points, never splitting a surrogate pair. */
function cut(value: string, max: number): string {
  if (value.length <= max) return value;
  let out = value.slice(0, max);
  const last = out.charCodeAt(out.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) out = out.slice(0, -1);
  return out;
}

/**
 * Compiles globs over label keys. picomatch treats '/' as a path separator, so `*password*` would miss
 * `app.example.io/password`; a key matches if it matches as written or with its '/' treated as ordinary text.
 */
function keyMatcher(globs: readonly string[], nocase: boolean): (key: string) => boolean {
  if (globs.length === 0) return () => false;
  const m = picomatch(globs as string[], { dot: true, nocase });
  return (key) => m(key) || (key.includes('/') && m(key.replaceAll('/', '\u2215')));
}

function cached(test: (key: string) => boolean): (key: string) => boolean {
  const memo = new Map<string, boolean>();
  return (key) => {
    let v = memo.get(key);
    if (v === undefined) {
      if (memo.size >= KEY_CACHE_MAX) memo.clear();
      v = test(key);
      memo.set(key, v);
    }
    return v;
  };
}

export function createMapper(config: MappingConfig, onWarning?: (msg: string) => void): Mapper {
  const max = config.max_value_length;
  const include = keyMatcher(config.labels.include, false);
  const exclude = keyMatcher(config.labels.exclude, false);
  const isRedacted = cached(keyMatcher(config.redact, true));
  const isSelected = cached((key) => include(key) && !exclude(key));
  const ownership = Object.entries(config.ownership);
  const regexes = new Map<string, RegExp | undefined>();

  /** The first present, non-empty, non-redacted value among `keys`, cut to the cap. */
  function pick(labels: Readonly<Record<string, string>>, keys: readonly string[]): string | undefined {
    for (const key of keys) {
      const v = labels[key];
      if (v !== undefined && v.trim() !== '' && !isRedacted(key))
        return cut(hideUrlCredentials(v.trim()), max);
    }
    return undefined;
  }

  function attributes(input: MappingInput): Attributes {
    const { labels, image } = input;
    const out: Record<string, AttributeValue> = {};
    out['container.id'] = input.id;
    const name = input.name.startsWith('/') ? input.name.slice(1) : input.name;
    if (name !== '') out['container.name'] = name;

    // Run by image id (`docker run sha256:…` or a short id): the reference names nothing.
    const ref = parseImageReference(input.imageRef);
    const byId =
      ref.name === '' ||
      (ref.tag === undefined &&
        ref.digest === undefined &&
        /^[0-9a-f]{4,64}$/.test(ref.name) &&
        input.imageId.startsWith(`sha256:${ref.name}`));
    if (!byId) {
      out['container.image.name'] = ref.name;
      const familiar = familiarName(ref.name);
      const tags: string[] = [];
      // An untagged, undigested reference means `latest`, as the engine resolved it.
      if (ref.tag !== undefined) tags.push(ref.tag);
      else if (ref.digest === undefined) tags.push('latest');
      for (const repoTag of image?.repoTags ?? []) {
        const t = parseImageReference(repoTag);
        if (t.tag !== undefined && familiarName(t.name) === familiar && !tags.includes(t.tag))
          tags.push(t.tag);
      }
      if (tags.length > 0) out['container.image.tags'] = tags;
    }
    if (input.imageId !== '') out['container.image.id'] = input.imageId;
    if (image && image.repoDigests.length > 0) out['container.image.repo_digests'] = [...image.repoDigests];
    out['container.runtime.name'] = 'docker';

    const namespace = pick(labels, NAMESPACE_KEYS);
    let service = pick(labels, [COMPOSE_SERVICE]);
    if (service === undefined) {
      // Swarm names a stack's service `<stack>_<service>`; the stack is already service.namespace.
      const swarm = pick(labels, [SWARM_SERVICE]);
      const stack = pick(labels, [STACK_NAMESPACE]);
      service =
        swarm !== undefined &&
        stack !== undefined &&
        swarm.startsWith(`${stack}_`) &&
        swarm.length > stack.length + 1
          ? swarm.slice(stack.length + 1)
          : swarm;
    }
    service ??= pick(labels, TITLE_KEYS);
    if (service !== undefined) out['service.name'] = service;
    const version = pick(labels, VERSION_KEYS);
    if (version !== undefined) out['service.version'] = version;
    if (namespace !== undefined) out['service.namespace'] = namespace;

    const revision = pick(labels, REVISION_KEYS);
    if (revision !== undefined) out['vcs.ref.head.revision'] = revision;
    for (const key of SOURCE_KEYS) {
      const raw = labels[key];
      if (raw === undefined || isRedacted(key)) continue;
      const url = normalizeRepositoryUrl(raw);
      if (url === undefined) continue;
      const u = new URL(url);
      const segments = u.pathname.split('/').filter((s) => s !== '');
      out['vcs.repository.url.full'] = cut(url, max);
      const repo = segments[segments.length - 1];
      if (repo !== undefined) out['vcs.repository.name'] = cut(repo, max);
      if (segments.length > 1) out['vcs.owner.name'] = cut(segments[0] as string, max);
      const provider = providerOf(u.host);
      if (provider !== undefined) out['vcs.provider.name'] = provider;
      break;
    }

    for (const [attribute, keys] of ownership) {
      if (attribute in out) continue;
      const v = pick(labels, keys);
      if (v !== undefined) out[attribute] = v;
    }

    const keys = Object.keys(labels).filter(isSelected).sort();
    for (const key of keys) {
      out[`container.label.${key}`] = isRedacted(key)
        ? REDACTED
        : cut(hideUrlCredentials(labels[key] as string), max);
    }
    return Object.freeze(out);
  }

  function compile(source: string): RegExp | undefined {
    if (regexes.has(source)) return regexes.get(source);
    let re: RegExp | undefined;
    try {
      re = new RegExp(source);
    } catch (err) {
      onWarning?.(
        `Ignore label ${MULTILINE_START_LABEL}: ${(err as Error).message}: fix the pattern (JavaScript RegExp syntax); lines are not joined until then`,
      );
      re = undefined;
    }
    if (regexes.size >= REGEX_CACHE_MAX) regexes.clear();
    regexes.set(source, re);
    return re;
  }

  function settings(labels: Readonly<Record<string, string>>): ContainerSettings {
    const ignore = /^(?:true|1|yes|on)$/i.test((labels[IGNORE_LABEL] ?? '').trim());
    const start = labels[MULTILINE_START_LABEL];
    const multilineStart = start === undefined || start === '' ? undefined : compile(start);
    return Object.freeze({ ignore, multilineStart });
  }

  function presentLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const key of Object.keys(labels).sort()) {
      out[key] = isRedacted(key) ? REDACTED : cut(hideUrlCredentials(labels[key] as string), max);
    }
    return out;
  }

  return { attributes, settings, isRedacted, presentLabels };
}
