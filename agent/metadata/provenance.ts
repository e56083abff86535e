/**
 * Where each label came from, worked out from the image config and `GET /images/{id}/history`. Pure.
 *
 * What the engine reports (checked on Docker 20.10, API 1.41; docs/mapping.md has the samples):
 * - History is newest first. Entry 0 is the image itself. An entry's `Id` is filled only while the engine can
 *   follow the image's `Parent` chain, which only the legacy builder and `docker commit` record; below that
 *   (pulled, loaded or BuildKit-built images) every `Id` is `<missing>`. `Tags` lists the tags of that id.
 * - A `LABEL` step shows as `/bin/sh -c #(nop)  LABEL k=v k2=v2` (legacy builder) or `LABEL k=v` (BuildKit),
 *   with the quotes already removed, so a value may contain spaces. `docker build --label` under the legacy
 *   builder adds one such step at the end.
 * - `docker commit` adds one entry whose `CreatedBy` is the container's command, with the committed image as
 *   its parent; labels from `--change LABEL` and from the container's own `--label` appear in no history entry.
 *
 * The rule:
 * 1. The base boundary is the newest entry below the top that has an `Id` and either has tags (a named image,
 *    as `FROM name:tag` requires) or sits on `<missing>` entries (an image pulled or loaded, hence not built
 *    here). Entries above it are this image's own build; when no entry qualifies, all are.
 * 2. For each label, find the newest `LABEL` step that sets its key. It is `image` when that step is in the
 *    own build, or when the step set a different value than the image has now (a later commit or build-time
 *    `--label` changed it); otherwise `base-image`. A label that no step sets is `image` (set by
 *    `docker commit --change`, a committed container's labels, or a builder that records no step).
 *
 * Limits: when the boundary is not visible (pulled, loaded or BuildKit-built images), the whole history counts
 * as the image's own build, so base labels are reported as `image`. A value that itself contains ` otherkey=`
 * for another label key of the image may be split wrongly, which can only turn `base-image` into `image`.
 */
import type { ImageEntry, LabelOrigin } from './types.ts';

/** One entry of `GET /images/{id}/history` (dockerode types it as `any`). */
export interface ImageHistoryEntry {
  readonly Id: string;
  readonly Created?: number;
  readonly CreatedBy: string;
  readonly Tags: readonly string[] | null;
  readonly Size?: number;
  readonly Comment?: string;
}

/** The parts of `GET /images/{id}/json` that provenance reads. */
export interface ImageInspectLabels {
  readonly Id: string;
  readonly Config?: { readonly Labels?: Readonly<Record<string, string>> | null } | null;
}

const MISSING = '<missing>';
/** `#(nop)  LABEL …` (legacy builder, also `cmd /S /C #(nop)` on Windows) or a bare `LABEL …` (BuildKit). */
const LABEL_STEP = /^(?:.*#\(nop\)\s+)?LABEL\s+([\s\S]*)$/;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The step text has the builder's quoting removed (or, from some builders, kept): accept either. */
function sameValue(stepValue: string, labelValue: string): boolean {
  if (stepValue === labelValue || stepValue === labelValue.trimEnd()) return true;
  const t = stepValue.trim();
  return (
    t.length >= 2 &&
    (t[0] === '"' || t[0] === "'") &&
    t[t.length - 1] === t[0] &&
    t.slice(1, -1) === labelValue
  );
}

/** Index of the first entry that belongs to a base image, or `history.length` when none is visible. */
function baseBoundary(history: readonly ImageHistoryEntry[]): number {
  for (let i = 1; i < history.length; i++) {
    const entry = history[i] as ImageHistoryEntry;
    if (entry.Id === MISSING || entry.Id === '') continue;
    if ((entry.Tags?.length ?? 0) > 0) return i;
    const below = history[i + 1];
    if (below !== undefined && (below.Id === MISSING || below.Id === '')) return i;
  }
  return history.length;
}

/**
 * The keys (among `keys`) that a LABEL step's text sets, with their raw values. Keys are found as `key=` at the
 * start or after whitespace, optionally quoted; a value runs to the next found key.
 */
function parseLabelStep(
  text: string,
  keys: readonly string[],
  matchers: Map<string, RegExp>,
): Map<string, string> {
  const hits: { key: string; start: number; valueStart: number }[] = [];
  for (const key of keys) {
    let re = matchers.get(key);
    if (re === undefined) {
      re = new RegExp(`(^|\\s)(["']?)${escapeRegExp(key)}\\2=`, 'g');
      matchers.set(key, re);
    }
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      hits.push({ key, start: m.index + (m[1] as string).length, valueStart: m.index + m[0].length });
    }
  }
  hits.sort((a, b) => a.start - b.start);
  const out = new Map<string, string>();
  for (let i = 0; i < hits.length; i++) {
    const hit = hits[i] as (typeof hits)[number];
    const end = hits[i + 1]?.start ?? text.length;
    out.set(hit.key, text.slice(hit.valueStart, end).replace(/\s+$/, ''));
  }
  return out;
}

/** For each image label: set by this image's own build ('image') or inherited from a base image / kept through docker commit ('base-image'). */
export function imageLabelOrigins(
  image: ImageInspectLabels,
  history: readonly ImageHistoryEntry[],
): Record<string, 'image' | 'base-image'> {
  const labels = image.Config?.Labels ?? {};
  const keys = Object.keys(labels);
  const out: Record<string, 'image' | 'base-image'> = {};
  if (keys.length === 0) return out;
  const boundary = baseBoundary(history);
  const matchers = new Map<string, RegExp>();
  const pending = new Set(keys);
  for (let i = 0; i < history.length && pending.size > 0; i++) {
    const step = LABEL_STEP.exec((history[i] as ImageHistoryEntry).CreatedBy ?? '');
    if (step === null) continue;
    // Parse with every key, so a value never runs into a key that a newer step already settled.
    for (const [key, value] of parseLabelStep(step[1] as string, keys, matchers)) {
      if (!pending.has(key)) continue;
      pending.delete(key);
      out[key] = i < boundary || !sameValue(value, labels[key] as string) ? 'image' : 'base-image';
    }
  }
  for (const key of pending) out[key] = 'image';
  // Image key order, so callers print labels in a stable order.
  const ordered: Record<string, 'image' | 'base-image'> = {};
  for (const key of keys) ordered[key] = out[key] as 'image' | 'base-image';
  return ordered;
}

/** Container label origins: 'container' when the container set it (absent from the image or a different value), else the image's origin. */
export function containerLabelOrigins(
  labels: Readonly<Record<string, string>>,
  image: ImageEntry | undefined,
): Record<string, LabelOrigin> {
  const out: Record<string, LabelOrigin> = {};
  for (const [key, value] of Object.entries(labels)) {
    const imageValue = image?.labels[key];
    out[key] =
      imageValue === undefined || imageValue !== value ? 'container' : (image?.labelOrigins[key] ?? 'image');
  }
  return out;
}
