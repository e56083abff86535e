/** Rendering for the one-shot CLI commands: aligned plain-text tables and JSON. */

/** What a table cell shows for a missing value, as `docker images` does. */
export const NONE = '-';

/**
 * Renders rows as columns separated by two spaces, each as wide as its widest cell. The last column
 * is not padded, so lines carry no trailing spaces.
 */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly (string | undefined)[])[],
): string {
  const cells = [headers, ...rows].map((row) => headers.map((_, i) => clean(row[i])));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** Renders `key  value` pairs (a two-column table without a header). */
export function renderPairs(pairs: readonly (readonly [string, string | undefined])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs
    .map(([k, v]) => `${k.padEnd(width)}  ${clean(v)}`.trimEnd())
    .join('\n')
    .concat('\n');
}

/** Pretty JSON with a trailing newline; the output of every `--json` flag. */
export function renderJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** One line per cell: control characters in label values must not break the table's alignment. */
function clean(value: string | undefined): string {
  if (value === undefined || value === '') return NONE;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point.
  return value.replace(/[\u0000-\u001f\u007f]/g, ' ');
}

/** Formats an attribute value (string or list) for a table cell. */
export function cellValue(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.join(', ');
}

/** `sha256:abcdef…` → the 12-hex short id that `docker` prints. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}
