/** An OpenTelemetry resource attribute value as labelcast produces it: a string or a string array. */
export type AttributeValue = string | readonly string[];

/** A container's resource attributes, in a stable key order (the order of the mapping table). */
export type Attributes = Readonly<Record<string, AttributeValue>>;

/**
 * Where a label's value came from:
 * - `container`: `docker run --label` (or Compose/Swarm), not present on the image;
 * - `image`: set by a `LABEL` in this image's own Dockerfile;
 * - `base-image`: inherited from a base image through `FROM`, or kept through `docker commit`.
 */
export type LabelOrigin = 'container' | 'image' | 'base-image';

/** One image, from `GET /images/{id}/json` plus its history. Immutable. */
export interface ImageEntry {
  /** `sha256:…` */
  readonly id: string;
  readonly repoTags: readonly string[];
  readonly repoDigests: readonly string[];
  /** RFC 3339, as the engine reports it. */
  readonly created: string;
  readonly labels: Readonly<Record<string, string>>;
  /** For each image label, whether this image's own build set it, or a base image / commit did. */
  readonly labelOrigins: Readonly<Record<string, 'image' | 'base-image'>>;
}

/** Per-container behaviour chosen by `io.labelcast.*` labels. */
export interface ContainerSettings {
  /** `io.labelcast.ignore=true`: collect nothing from this container. */
  readonly ignore: boolean;
  /** `io.labelcast.multiline.start=<regex>`: a line that does not match continues the previous record. */
  readonly multilineStart: RegExp | undefined;
}

/**
 * One container as the store knows it. Entries are immutable: a rename or update produces a new
 * object, so consumers may cache derived forms (OTLP Resource bytes, Loki labels, stdout JSON) in a
 * `WeakMap<ContainerEntry, …>` and compute them once per container version.
 */
export interface ContainerEntry {
  /** Full 64-hex id. */
  readonly id: string;
  /** First 12 characters of the id. */
  readonly shortId: string;
  /** Without Docker's leading `/`. */
  readonly name: string;
  readonly hostname: string;
  /** `Config.Image`: the reference the user gave (`ghcr.io/acme/api:1.2`, or an id). */
  readonly imageRef: string;
  /** `Image` from inspect: `sha256:…`. */
  readonly imageId: string;
  readonly image: ImageEntry | undefined;
  /** Effective labels (`Config.Labels`): image labels overlaid by container labels. Unredacted. */
  readonly labels: Readonly<Record<string, string>>;
  readonly labelOrigins: Readonly<Record<string, LabelOrigin>>;
  /** IP addresses on each attached network (empty for `--network none`/`host`). */
  readonly ips: readonly string[];
  readonly running: boolean;
  readonly pid: number;
  readonly tty: boolean;
  /** json-file path from inspect (`LogPath`), empty for other drivers. */
  readonly logPath: string;
  readonly logDriver: string;
  /** RFC 3339 (`State.StartedAt`). */
  readonly startedAt: string;
  /** Precomputed once from labels and image: what every record and span of this container carries. */
  readonly attributes: Attributes;
  readonly settings: ContainerSettings;
  /** Set when the engine reported the container destroyed; the entry is kept for the tombstone grace. */
  readonly removedAt: number | undefined;
}

/** What the store tells subscribers. `entry` is the new version (or the tombstone for `destroy`). */
export type ContainerChange =
  | { readonly type: 'start' | 'update' | 'rename' | 'create'; readonly entry: ContainerEntry }
  | { readonly type: 'die'; readonly entry: ContainerEntry; readonly exitCode: number | undefined }
  | { readonly type: 'destroy'; readonly entry: ContainerEntry };

/**
 * Read-only view of the container metadata that the watcher keeps current. Receivers, the enrich
 * step and association rules use only this; they never call the engine themselves.
 */
export interface MetadataStore {
  /** Sync lookup by full id or 12-char short id; includes tombstones within their grace. */
  get(id: string): ContainerEntry | undefined;
  /**
   * Like `get`, but on a miss inspects the container on demand. Concurrent calls for one id share one
   * request; ids the engine does not know are remembered briefly and answer `undefined` at once.
   */
  resolve(id: string): Promise<ContainerEntry | undefined>;
  byName(name: string): ContainerEntry | undefined;
  byHostname(hostname: string): ContainerEntry | undefined;
  /** The container that holds this IP now; never a container that has since released it. */
  byIp(ip: string): ContainerEntry | undefined;
  /** Running containers, as of the last list/event. */
  running(): ContainerEntry[];
  /** Subscribes to changes; returns an unsubscribe function. Listeners must not throw or block. */
  subscribe(listener: (change: ContainerChange) => void): () => void;
}
