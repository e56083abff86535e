/**
 * The container and image caches behind MetadataStore. The watcher feeds it events and re-lists;
 * lookups read it and, on a miss, inspect on demand. Entries are immutable: every change stores a
 * new object, so consumers can key derived forms on the entry itself.
 */
import type Docker from 'dockerode';
import { LRUCache } from 'lru-cache';
import { Counter, Gauge } from 'prom-client';
import type { Logger } from '../telemetry/logger.ts';
import type { Registry } from '../telemetry/metrics.ts';
import type { MetadataConfig } from './config.ts';
import type { Mapper } from './mapping.ts';
import { containerLabelOrigins, imageLabelOrigins } from './provenance.ts';
import type {
  Attributes,
  AttributeValue,
  ContainerChange,
  ContainerEntry,
  ImageEntry,
  LabelOrigin,
  MetadataStore,
} from './types.ts';

/** Docker API calls the store and watcher make (all GET). */
export type DockerRequest =
  | 'container_list'
  | 'container_inspect'
  | 'image_inspect'
  | 'image_history'
  | 'events';
const REQUESTS: readonly DockerRequest[] = [
  'container_list',
  'container_inspect',
  'image_inspect',
  'image_history',
  'events',
];

export interface StoreCounters {
  hits: number;
  misses: number;
  containerInspects: number;
  imageInspects: number;
  evictions: number;
  size: number;
  images: number;
}

/** What a refresh came to: the entry now stored and the time spent waiting for the engine. */
export interface RefreshResult {
  readonly entry: ContainerEntry | undefined;
  readonly engineMs: number;
}

export interface StoreDeps {
  docker: Docker;
  mapper: Mapper;
  config: MetadataConfig;
  logger: Logger;
  metrics: Registry;
}

/** The subset of `GET /containers/json` items that reconciling reads. */
export interface ListedContainer {
  Id: string;
  Names?: string[];
  ImageID?: string;
  State?: string;
  Status?: string;
  NetworkSettings?: { Networks?: Record<string, { IPAddress?: string; GlobalIPv6Address?: string }> };
}

/** Ids, short ids and names the engine accepts; anything else never reaches a request path. */
const CONTAINER_REF = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
const RECONCILE_CONCURRENCY = 8;
/** A container whose uptime may be shorter than the disconnection (plus this) is inspected again. */
const UPTIME_SLACK_MS = 2000;
const WARN_INTERVAL_MS = 60_000;

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number })?.statusCode === 404;
}

function stripSlash(name: string): string {
  return name.startsWith('/') ? name.slice(1) : name;
}

function ipsOf(networks: Record<string, { IPAddress?: string; GlobalIPv6Address?: string }> | undefined) {
  const ips: string[] = [];
  for (const n of Object.values(networks ?? {})) {
    if (n.IPAddress) ips.push(n.IPAddress);
    if (n.GlobalIPv6Address) ips.push(n.GlobalIPv6Address);
  }
  return ips;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (const x of a) if (!b.includes(x)) return false;
  return true;
}

/**
 * The least time a container reported running has been up, from the list's human `Status`
 * ("Up 3 seconds", "Up About a minute (healthy)"), following the engine's HumanDuration rounding.
 * 0 when the text is not understood, so the caller re-inspects.
 */
export function uptimeLowerBoundMs(status: string | undefined): number {
  const m =
    /^Up (Less than a second|About a minute|About an hour|(\d+) (second|minute|hour|day|week|month|year)s?)/.exec(
      status ?? '',
    );
  if (!m) return 0;
  if (m[1] === 'Less than a second') return 0;
  if (m[1] === 'About a minute') return 60_000;
  if (m[1] === 'About an hour') return 3_600_000;
  const n = Number(m[2]);
  switch (m[3]) {
    case 'second':
      return n * 1000;
    case 'minute':
      return n * 60_000;
    // Hours and longer are rounded to the nearest unit.
    case 'hour':
      return (n - 0.5) * 3_600_000;
    case 'day':
      return (n - 0.5) * 86_400_000;
    default:
      return 2 * 86_400_000;
  }
}

export class ContainerStore implements MetadataStore {
  readonly #docker: Docker;
  readonly #mapper: Mapper;
  readonly #config: MetadataConfig;
  readonly #logger: Logger;

  readonly #containers: LRUCache<string, ContainerEntry>;
  readonly #images: LRUCache<string, ImageEntry>;
  /** Ids and refs the engine said it does not know, answered from memory until negative_ttl. */
  readonly #negative: LRUCache<string, true>;
  /** performance.now() as of which each entry reflects the engine; older news never overwrites newer. */
  readonly #knownAt = new Map<string, number>();
  readonly #byShort = new Map<string, string>();
  readonly #byName = new Map<string, string>();
  readonly #byHostname = new Map<string, string>();
  readonly #byIp = new Map<string, string>();
  readonly #inflight = new Map<string, { startedAt: number; promise: Promise<RefreshResult> }>();
  readonly #imageInflight = new Map<string, { startedAt: number; promise: Promise<ImageFetch> }>();
  readonly #listeners = new Set<(change: ContainerChange) => void>();
  /** Tombstones in expiry order (the grace is one constant). */
  #tombstones: { id: string; entry: ContainerEntry; expiresAt: number }[] = [];
  #tombstoneTimer: NodeJS.Timeout | undefined;
  readonly #lastWarn = new Map<string, number>();
  /** The last entry built per image: later containers of that image share its values. */
  readonly #templates = new WeakMap<object, ContainerEntry>();

  #hits = 0;
  #misses = 0;
  #evictions = { containers: 0, images: 0 };
  readonly #requests: Record<DockerRequest, number> = {
    container_list: 0,
    container_inspect: 0,
    image_inspect: 0,
    image_history: 0,
    events: 0,
  };
  readonly #errors: Record<DockerRequest, number> = {
    container_list: 0,
    container_inspect: 0,
    image_inspect: 0,
    image_history: 0,
    events: 0,
  };

  constructor(deps: StoreDeps) {
    this.#docker = deps.docker;
    this.#mapper = deps.mapper;
    this.#config = deps.config;
    this.#logger = deps.logger;
    this.#containers = new LRUCache<string, ContainerEntry>({
      max: deps.config.max_containers,
      dispose: (entry, id, reason) => {
        if (reason !== 'evict') return;
        this.#evictions.containers++;
        this.#unindex(id, entry);
      },
    });
    this.#images = new LRUCache<string, ImageEntry>({
      max: deps.config.max_images,
      dispose: (_image, _id, reason) => {
        if (reason === 'evict') this.#evictions.images++;
      },
    });
    this.#negative = new LRUCache<string, true>({ max: 10_000, ttl: Math.max(1, deps.config.negative_ttl) });
    this.#registerMetrics(deps.metrics);
  }

  // ---- MetadataStore -------------------------------------------------------------------------

  get(id: string): ContainerEntry | undefined {
    const entry = this.#lookupId(id);
    if (entry) this.#hits++;
    else this.#misses++;
    return entry;
  }

  async resolve(id: string): Promise<ContainerEntry | undefined> {
    const known = this.#lookupId(id) ?? this.#verified(this.#byName, stripSlash(id), 'name');
    if (known) {
      this.#hits++;
      return known;
    }
    this.#misses++;
    const ref = stripSlash(id);
    if (!CONTAINER_REF.test(ref) || this.#negative.has(ref)) return undefined;
    // Any inspect already out for this ref answers as well as a new one would.
    const result = await this.#fetch(ref, 0, 'resolve');
    return result.entry;
  }

  byName(name: string): ContainerEntry | undefined {
    return this.#count(this.#verified(this.#byName, stripSlash(name), 'name'));
  }

  byHostname(hostname: string): ContainerEntry | undefined {
    return this.#count(this.#verified(this.#byHostname, hostname, 'hostname'));
  }

  byIp(ip: string): ContainerEntry | undefined {
    const id = this.#byIp.get(ip);
    const entry = id === undefined ? undefined : this.#containers.get(id);
    // Verify on read: only a running container that reports this IP now holds it.
    const holds = entry?.running && entry.removedAt === undefined && entry.ips.includes(ip);
    return this.#count(holds ? entry : undefined);
  }

  running(): ContainerEntry[] {
    const out: ContainerEntry[] = [];
    for (const entry of this.#containers.values())
      if (entry.running && entry.removedAt === undefined) out.push(entry);
    return out;
  }

  subscribe(listener: (change: ContainerChange) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  // ---- Fed by the watcher --------------------------------------------------------------------

  /** A created container exists now: forget that the engine did not know it. */
  noteCreated(id: string, name: string | undefined): void {
    this.#negative.delete(id);
    this.#negative.delete(id.slice(0, 12));
    if (name) this.#negative.delete(stripSlash(name));
  }

  /**
   * Makes sure the entry reflects the engine as of `notBefore` (a performance.now() time): reuses the
   * stored entry or an inspect already in flight when they are at least that fresh.
   */
  refresh(id: string, notBefore: number): Promise<RefreshResult> {
    const current = this.#containers.peek(id);
    if (current && current.removedAt === undefined && (this.#knownAt.get(id) ?? -1) >= notBefore) {
      return Promise.resolve({ entry: current, engineMs: 0 });
    }
    return this.#fetch(id, notBefore, 'event');
  }

  markDied(id: string, exitCode: number | undefined, at: number): void {
    const current = this.#fresh(id, at);
    if (!current?.running) return;
    const entry = Object.freeze({ ...current, running: false, pid: 0, ips: NO_IPS });
    this.#put(entry, at);
    this.#emit({ type: 'die', entry, exitCode });
  }

  markRenamed(id: string, newName: string, at: number): void {
    const current = this.#fresh(id, at);
    const name = stripSlash(newName);
    if (!current || name === '' || name === current.name) return;
    const entry = this.#derive(current, { name }, current.image);
    this.#put(entry, at);
    this.#emit({ type: 'rename', entry });
  }

  markDestroyed(id: string, at: number): void {
    const current = this.#fresh(id, at);
    if (!current) return;
    const entry = Object.freeze({
      ...current,
      running: false,
      pid: 0,
      ips: NO_IPS,
      removedAt: Date.now(),
    });
    this.#put(entry, at);
    this.#tombstones.push({ id, entry, expiresAt: performance.now() + this.#config.tombstone_grace });
    this.#armTombstoneTimer();
    this.#emit({ type: 'destroy', entry });
  }

  /** An image was tagged or untagged: inspect it again and rebuild the entries of its containers. */
  async refreshImage(imageId: string, at: number): Promise<void> {
    let used = this.#images.has(imageId);
    if (!used) for (const e of this.#containers.values()) if (e.imageId === imageId) used = true;
    if (!used) return;
    const { image } = await this.#image(imageId, at);
    if (!image) return;
    for (const current of [...this.#containers.values()]) {
      if (current.imageId !== imageId || current.image === image || current.removedAt !== undefined) continue;
      const entry = this.#derive(current, {}, image);
      this.#put(entry, this.#knownAt.get(current.id) ?? at);
      this.#emit({ type: 'update', entry });
    }
  }

  /** The image was deleted; containers keep the image entry they were built with. */
  forgetImage(imageId: string): void {
    this.#images.delete(imageId);
  }

  /**
   * Brings the store in line with a fresh `GET /containers/json?all=1` started at `listedAt`.
   * `gapMs` is how long the event stream was down (undefined on the first list): running containers
   * that may have restarted within it are inspected again, as their events may be lost.
   */
  async reconcile(
    list: readonly ListedContainer[],
    listedAt: number,
    gapMs: number | undefined,
  ): Promise<void> {
    const seen = new Set<string>();
    const todo: string[] = [];
    for (const c of list) {
      seen.add(c.Id);
      const current = this.#containers.peek(c.Id);
      if (!current || current.removedAt !== undefined) {
        todo.push(c.Id);
        continue;
      }
      if ((this.#knownAt.get(c.Id) ?? -1) >= listedAt) continue;
      const running = c.State === 'running';
      const changed =
        current.running !== running ||
        current.name !== stripSlash(c.Names?.[0] ?? '') ||
        (c.ImageID !== undefined && c.ImageID !== current.imageId) ||
        (running && !sameList(current.ips, ipsOf(c.NetworkSettings?.Networks)));
      const restarted =
        running && gapMs !== undefined && uptimeLowerBoundMs(c.Status) <= gapMs + UPTIME_SLACK_MS;
      if (changed || restarted) todo.push(c.Id);
    }
    for (const [id, entry] of [...this.#containers.entries()]) {
      if (seen.has(id) || entry.removedAt !== undefined) continue;
      if ((this.#knownAt.get(id) ?? -1) < listedAt) this.markDestroyed(id, listedAt);
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const id = todo[next++] as string;
        await this.#fetch(id, listedAt, 'event');
      }
    };
    await Promise.all(Array.from({ length: Math.min(RECONCILE_CONCURRENCY, todo.length) }, worker));
  }

  /** Counts a request the watcher made, for the request counters. */
  countRequest(request: DockerRequest): void {
    this.#requests[request]++;
  }

  /** Counts a failed request (or a stream that broke) the watcher made. */
  countError(request: DockerRequest): void {
    this.#errors[request]++;
  }

  /** Logs a recovered fault at most once a minute per kind; every occurrence is counted by the caller. */
  warnOnce(kind: string, err: unknown, message: string): void {
    const now = performance.now();
    const last = this.#lastWarn.get(kind);
    if (last !== undefined && now - last < WARN_INTERVAL_MS) return;
    this.#lastWarn.set(kind, now);
    this.#logger.warn({ err }, message);
  }

  counters(): StoreCounters {
    return {
      hits: this.#hits,
      misses: this.#misses,
      containerInspects: this.#requests.container_inspect,
      imageInspects: this.#requests.image_inspect,
      evictions: this.#evictions.containers + this.#evictions.images,
      size: this.#containers.size,
      images: this.#images.size,
    };
  }

  /** Every Docker request made so far, by kind. */
  requests(): Readonly<Record<DockerRequest, number>> {
    return { ...this.#requests };
  }

  /** Stops the tombstone timer; the store stays readable. */
  close(): void {
    clearTimeout(this.#tombstoneTimer);
    this.#tombstoneTimer = undefined;
  }

  /** Builds and stores an entry from a recorded container inspect (and image) payload: for tests and benchmarks. */
  ingest(inspect: Docker.ContainerInspectInfo, image: ImageEntry | undefined): ContainerEntry {
    if (image) this.#images.set(image.id, image);
    const entry = this.#build(inspect, image);
    this.#put(entry, performance.now());
    return entry;
  }

  // ---- Internals -----------------------------------------------------------------------------

  #count(entry: ContainerEntry | undefined): ContainerEntry | undefined {
    if (entry) this.#hits++;
    else this.#misses++;
    return entry;
  }

  #lookupId(id: string): ContainerEntry | undefined {
    if (id.length === 64) return this.#containers.get(id);
    if (id.length === 12) {
      const full = this.#byShort.get(id);
      return full === undefined ? undefined : this.#containers.get(full);
    }
    return undefined;
  }

  #verified(index: Map<string, string>, key: string, field: 'name' | 'hostname'): ContainerEntry | undefined {
    const id = index.get(key);
    if (id === undefined) return undefined;
    const entry = this.#containers.get(id);
    return entry !== undefined && entry[field] === key ? entry : undefined;
  }

  /** The stored entry, unless the store already knows something newer than `at`. */
  #fresh(id: string, at: number): ContainerEntry | undefined {
    const current = this.#containers.peek(id);
    if (!current || current.removedAt !== undefined) return undefined;
    if ((this.#knownAt.get(id) ?? -1) > at) return undefined;
    return current;
  }

  #fetch(ref: string, notBefore: number, cause: 'event' | 'resolve'): Promise<RefreshResult> {
    const inflight = this.#inflight.get(ref);
    if (inflight && inflight.startedAt >= notBefore) return inflight.promise;
    const startedAt = performance.now();
    const promise = this.#inspect(ref, startedAt, cause).finally(() => {
      if (this.#inflight.get(ref)?.promise === promise) this.#inflight.delete(ref);
    });
    this.#inflight.set(ref, { startedAt, promise });
    return promise;
  }

  async #inspect(ref: string, startedAt: number, cause: 'event' | 'resolve'): Promise<RefreshResult> {
    let info: Docker.ContainerInspectInfo;
    this.#requests.container_inspect++;
    const t0 = performance.now();
    try {
      info = await this.#docker.getContainer(ref).inspect();
    } catch (err) {
      if (isNotFound(err)) {
        if (cause === 'resolve') this.#negative.set(ref, true);
        return { entry: undefined, engineMs: performance.now() - t0 };
      }
      this.#errors.container_inspect++;
      this.warnOnce(
        'container_inspect',
        err,
        'Inspect container failed: will retry on the next event or lookup',
      );
      return { entry: undefined, engineMs: performance.now() - t0 };
    }
    let engineMs = performance.now() - t0;
    const fetched = await this.#image(info.Image);
    engineMs += fetched.engineMs;
    const current = this.#containers.peek(info.Id);
    // Something newer (a die, destroy or later inspect) landed while this request was out: keep it.
    if (current && (this.#knownAt.get(info.Id) ?? -1) > startedAt) return { entry: current, engineMs };
    const image = this.#images.peek(info.Image) ?? fetched.image;
    const built = this.#build(info, image);
    const entry = current && current.removedAt === undefined ? this.#reuse(current, built) : built;
    this.#put(entry, startedAt);
    if (entry !== current) this.#emit(this.#changeOf(current, entry, info));
    return { entry, engineMs };
  }

  /**
   * An image entry, inspected once (plus its history, for label provenance); concurrent callers share
   * the request. `refreshAfter` forces a new inspect unless one started after that time is in flight.
   */
  #image(imageId: string, refreshAfter?: number): Promise<ImageFetch> {
    if (imageId === '') return Promise.resolve({ image: undefined, engineMs: 0 });
    const inflight = this.#imageInflight.get(imageId);
    if (refreshAfter === undefined) {
      const cached = this.#images.get(imageId);
      if (cached) return Promise.resolve({ image: cached, engineMs: 0 });
      if (inflight) return inflight.promise;
    } else if (inflight && inflight.startedAt >= refreshAfter) {
      return inflight.promise;
    }
    const startedAt = performance.now();
    const promise = this.#inspectImage(imageId).finally(() => {
      if (this.#imageInflight.get(imageId)?.promise === promise) this.#imageInflight.delete(imageId);
    });
    this.#imageInflight.set(imageId, { startedAt, promise });
    return promise;
  }

  async #inspectImage(imageId: string): Promise<ImageFetch> {
    const t0 = performance.now();
    const img = this.#docker.getImage(imageId);
    this.#requests.image_inspect++;
    this.#requests.image_history++;
    try {
      const [inspect, history] = await Promise.all([img.inspect(), img.history()]);
      const engineMs = performance.now() - t0;
      const labels = inspect.Config?.Labels ?? {};
      const origins = imageLabelOrigins(inspect, history);
      const image: ImageEntry = Object.freeze({
        id: inspect.Id,
        repoTags: Object.freeze(inspect.RepoTags ?? []),
        repoDigests: Object.freeze(inspect.RepoDigests ?? []),
        created: inspect.Created,
        labels: fastRecord(Object.keys(labels), (key) => labels[key] as string),
        labelOrigins: fastRecord(Object.keys(origins), (key) => origins[key] as 'image' | 'base-image'),
      });
      this.#images.set(imageId, image);
      return { image, engineMs };
    } catch (err) {
      const engineMs = performance.now() - t0;
      if (isNotFound(err)) return { image: undefined, engineMs };
      this.#errors.image_inspect++;
      this.warnOnce(
        'image_inspect',
        err,
        'Inspect image failed: its containers carry no image attributes until the next change',
      );
      return { image: this.#images.peek(imageId), engineMs };
    }
  }

  #build(info: Docker.ContainerInspectInfo, image: ImageEntry | undefined): ContainerEntry {
    const raw = info.Config?.Labels ?? {};
    // Share objects and strings with the image and with the last container built from it: replicas
    // differ in a few fields, and 1,000 copies of the rest add up.
    const template = this.#templates.get(image ?? NO_IMAGE);
    const imageLabels = image?.labels;
    let labels: Readonly<Record<string, string>>;
    let labelOrigins: Readonly<Record<string, LabelOrigin>>;
    if (image !== undefined && imageLabels !== undefined && sameLabels(raw, imageLabels)) {
      labels = imageLabels;
      labelOrigins = image.labelOrigins;
    } else {
      const own = fastRecord(Object.keys(raw), (key) => {
        const value = raw[key] as string;
        const inherited = imageLabels?.[key];
        return inherited === value ? inherited : shareString(value, template?.labels[key]);
      });
      labels = template !== undefined && sameLabels(own, template.labels) ? template.labels : own;
      const origins = containerLabelOrigins(labels, image);
      labelOrigins =
        template !== undefined && sameLabels(origins, template.labelOrigins)
          ? template.labelOrigins
          : fastRecord(Object.keys(origins), (key) => origins[key] as LabelOrigin);
    }
    const id = info.Id;
    const shortId = id.slice(0, 12);
    const imageId = image !== undefined && image.id === info.Image ? image.id : info.Image;
    const name = stripSlash(info.Name ?? '');
    const imageRef = shareString(info.Config?.Image ?? '', template?.imageRef);
    const hostname = info.Config?.Hostname ?? '';
    const hostConfig = info.HostConfig as { LogConfig?: { Type?: string } } | undefined;
    const ips = ipsOf(info.NetworkSettings?.Networks);
    const settings = this.#mapper.settings(labels);
    const entry: ContainerEntry = Object.freeze({
      id,
      shortId,
      name,
      hostname: hostname === shortId ? shortId : hostname,
      imageRef,
      imageId,
      image,
      labels,
      labelOrigins,
      ips: ips.length === 0 ? NO_IPS : Object.freeze(ips),
      running: info.State?.Running === true,
      pid: info.State?.Pid ?? 0,
      tty: info.Config?.Tty === true,
      logPath: info.LogPath ?? '',
      logDriver: shareString(hostConfig?.LogConfig?.Type ?? '', template?.logDriver),
      startedAt: info.State?.StartedAt ?? '',
      attributes: compactAttributes(
        this.#mapper.attributes({ id, name, imageRef, imageId, image, labels }),
        template?.attributes,
      ),
      settings:
        template !== undefined &&
        template.settings.ignore === settings.ignore &&
        template.settings.multilineStart === settings.multilineStart
          ? template.settings
          : settings,
      removedAt: undefined,
    });
    this.#templates.set(image ?? NO_IMAGE, entry);
    return entry;
  }

  /** A new version of `current`; attributes are computed again only when their inputs changed. */
  #derive(
    current: ContainerEntry,
    changes: Partial<Pick<ContainerEntry, 'name'>>,
    image: ImageEntry | undefined,
  ): ContainerEntry {
    const name = changes.name ?? current.name;
    const { id, imageRef, imageId, labels } = current;
    let labelOrigins = current.labelOrigins;
    if (image !== current.image) {
      const origins = containerLabelOrigins(labels, image);
      labelOrigins =
        image !== undefined && labels === image.labels
          ? image.labelOrigins
          : fastRecord(Object.keys(origins), (key) => origins[key] as LabelOrigin);
    }
    return Object.freeze({
      ...current,
      name,
      image,
      labelOrigins,
      attributes: compactAttributes(
        this.#mapper.attributes({ id, name, imageRef, imageId, image, labels }),
        current.attributes,
      ),
    });
  }

  /**
   * Keeps the stored object when nothing changed (so consumers' per-entry caches stay valid), and its
   * labels, origins, attributes and settings when only runtime state changed.
   */
  #reuse(current: ContainerEntry, built: ContainerEntry): ContainerEntry {
    const sameMeta =
      current.name === built.name &&
      current.imageRef === built.imageRef &&
      current.imageId === built.imageId &&
      current.image === built.image &&
      sameLabels(current.labels, built.labels);
    const sameState =
      current.hostname === built.hostname &&
      current.running === built.running &&
      current.pid === built.pid &&
      current.tty === built.tty &&
      current.logPath === built.logPath &&
      current.logDriver === built.logDriver &&
      current.startedAt === built.startedAt &&
      sameList(current.ips, built.ips);
    if (sameMeta && sameState) return current;
    if (!sameMeta) return built;
    return Object.freeze({
      ...built,
      labels: current.labels,
      labelOrigins: current.labelOrigins,
      attributes: current.attributes,
      settings: current.settings,
    });
  }

  #changeOf(
    previous: ContainerEntry | undefined,
    entry: ContainerEntry,
    info: Docker.ContainerInspectInfo,
  ): ContainerChange {
    const wasRunning = previous !== undefined && previous.removedAt === undefined && previous.running;
    if (entry.running && (!wasRunning || previous?.startedAt !== entry.startedAt))
      return { type: 'start', entry };
    if (wasRunning && !entry.running) return { type: 'die', entry, exitCode: info.State?.ExitCode };
    if (previous === undefined || previous.removedAt !== undefined) return { type: 'create', entry };
    if (previous.name !== entry.name) return { type: 'rename', entry };
    return { type: 'update', entry };
  }

  /** Stores a version and keeps every index pointing at the container that holds the key now. */
  #put(entry: ContainerEntry, knownAt: number): void {
    const previous = this.#containers.peek(entry.id);
    if (previous && previous !== entry) this.#unindex(entry.id, previous, entry);
    this.#containers.set(entry.id, entry);
    this.#knownAt.set(entry.id, knownAt);
    this.#byShort.set(entry.shortId, entry.id);
    if (entry.name !== '') this.#byName.set(entry.name, entry.id);
    if (entry.hostname !== '') this.#byHostname.set(entry.hostname, entry.id);
    if (entry.removedAt === undefined && entry.running)
      for (const ip of entry.ips) this.#byIp.set(ip, entry.id);
  }

  /** Drops index keys that point at `id` and that `next` (the new version, if any) no longer holds. */
  #unindex(id: string, entry: ContainerEntry, next?: ContainerEntry): void {
    const drop = (index: Map<string, string>, key: string, kept: boolean) => {
      if (!kept && index.get(key) === id) index.delete(key);
    };
    drop(this.#byShort, entry.shortId, next !== undefined);
    drop(this.#byName, entry.name, next?.name === entry.name);
    drop(this.#byHostname, entry.hostname, next?.hostname === entry.hostname);
    for (const ip of entry.ips) drop(this.#byIp, ip, next?.running === true && next.ips.includes(ip));
    if (next === undefined) this.#knownAt.delete(id);
  }

  #armTombstoneTimer(): void {
    if (this.#tombstoneTimer !== undefined) return;
    const first = this.#tombstones[0];
    if (!first) return;
    this.#tombstoneTimer = setTimeout(
      () => {
        this.#tombstoneTimer = undefined;
        this.#expireTombstones();
      },
      Math.max(0, first.expiresAt - performance.now()),
    );
    this.#tombstoneTimer.unref();
  }

  #expireTombstones(): void {
    const now = performance.now();
    let n = 0;
    for (const t of this.#tombstones) {
      if (t.expiresAt > now) break;
      n++;
      // Still this tombstone (not a container that came back, nor evicted): drop it.
      const current = this.#containers.peek(t.id);
      if (current !== undefined && current.removedAt === t.entry.removedAt) {
        this.#containers.delete(t.id);
        this.#unindex(t.id, current);
      }
    }
    this.#tombstones = this.#tombstones.slice(n);
    this.#armTombstoneTimer();
  }

  #emit(change: ContainerChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.warnOnce(
          'listener',
          err,
          'A metadata subscriber threw: it must not; the change was still applied',
        );
      }
    }
  }

  #registerMetrics(registry: Registry): void {
    const store = this;
    const reported = new Map<string, number>();
    /** prom-client counters are incremented by the difference since the last scrape. */
    const sync = (counter: Counter<string>, key: string, labels: Record<string, string>, value: number) => {
      const last = reported.get(key) ?? 0;
      if (value > last) counter.inc(labels, value - last);
      reported.set(key, value);
    };
    new Counter({
      name: 'labelcast_metadata_lookups_total',
      help: 'Container metadata lookups, by whether the store answered from its cache.',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        sync(this, 'hit', { result: 'hit' }, store.#hits);
        sync(this, 'miss', { result: 'miss' }, store.#misses);
      },
    });
    new Counter({
      name: 'labelcast_metadata_docker_requests_total',
      help: 'Docker Engine API requests made for metadata, by request.',
      labelNames: ['request'],
      registers: [registry],
      collect() {
        for (const r of REQUESTS) sync(this, `req:${r}`, { request: r }, store.#requests[r]);
      },
    });
    new Counter({
      name: 'labelcast_metadata_docker_errors_total',
      help: 'Docker Engine API requests for metadata that failed (other than 404), by request.',
      labelNames: ['request'],
      registers: [registry],
      collect() {
        for (const r of REQUESTS) sync(this, `err:${r}`, { request: r }, store.#errors[r]);
      },
    });
    new Counter({
      name: 'labelcast_metadata_evictions_total',
      help: 'Entries evicted from the metadata caches because they were full.',
      labelNames: ['cache'],
      registers: [registry],
      collect() {
        sync(this, 'ev:containers', { cache: 'containers' }, store.#evictions.containers);
        sync(this, 'ev:images', { cache: 'images' }, store.#evictions.images);
      },
    });
    new Gauge({
      name: 'labelcast_metadata_entries',
      help: 'Entries in the metadata caches (containers includes tombstones).',
      labelNames: ['cache'],
      registers: [registry],
      collect() {
        this.set({ cache: 'containers' }, store.#containers.size);
        this.set({ cache: 'tombstones' }, store.#tombstones.length);
        this.set({ cache: 'images' }, store.#images.size);
      },
    });
  }
}

const NO_IMAGE = {};
const NO_IPS: readonly string[] = Object.freeze([]);

function shareString(value: string, shared: string | undefined): string {
  return shared === value ? shared : value;
}

/**
 * A frozen record with fast properties and a hidden class shared by every record with the same keys.
 * V8 turns an object built key by key into a hash table past about 20 keys (about 1.5 KiB instead of
 * 0.3 for an attribute set); JSON.parse builds it in fast mode.
 */
function fastRecord<V>(keys: readonly string[], value: (key: string) => V): Readonly<Record<string, V>> {
  let shape = '{';
  for (let i = 0; i < keys.length; i++) shape += `${i === 0 ? '' : ','}${JSON.stringify(keys[i])}:0`;
  const out = JSON.parse(`${shape}}`) as Record<string, V>;
  for (const key of keys) {
    if (key === '__proto__')
      Object.defineProperty(out, key, { value: value(key), enumerable: true, writable: true });
    else out[key] = value(key);
  }
  return Object.freeze(out);
}

/** The attribute set in fast mode, each value that equals the template's replaced by the template's copy. */
function compactAttributes(attributes: Attributes, template: Attributes | undefined): Attributes {
  return fastRecord(Object.keys(attributes), (key) => {
    const value = attributes[key] as AttributeValue;
    const shared = template?.[key];
    if (typeof value === 'string') return typeof shared === 'string' ? shareString(value, shared) : value;
    return Array.isArray(shared) && sameArray(value, shared) ? (shared as readonly string[]) : value;
  });
}

function sameArray(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

interface ImageFetch {
  readonly image: ImageEntry | undefined;
  readonly engineMs: number;
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

export function createStore(deps: StoreDeps): ContainerStore {
  return new ContainerStore(deps);
}
