/**
 * Polls `probe` until it gives a value (anything but `undefined` or `false`) and returns that value.
 * Fails after `ms` with what it waited for, plus `detail()` (say, a child's stderr) when given.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 60_000,
  detail?: () => string,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}${detail ? `\n${detail()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Polls `check` until it is true; fails after `ms` with what it waited for. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms?: number,
): Promise<void> {
  await waitFor(what, async () => (await check()) || undefined, ms);
}
