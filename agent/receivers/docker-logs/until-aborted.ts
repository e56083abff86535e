/**
 * Waits for `promise`, or resolves undefined as soon as `signal` aborts (shutdown must not hang on a
 * consumer that never answers). The abort listener is removed when `promise` settles, so waiting on one
 * long-lived signal batch after batch keeps nothing alive (a `Promise.race` with a pending promise would).
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
