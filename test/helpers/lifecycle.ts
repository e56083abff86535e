import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Component } from '../../agent/pipeline/types.ts';

/** What a component's test gives the shared lifecycle suite. One harness per test: build it fresh. */
export interface LifecycleHarness {
  readonly component: Component;
  /**
   * Feeds data through the component's real intake (consume, a socket, a file a container writes…) after
   * start() and returns how many items it sent.
   */
  send(): Promise<number>;
  /** How many of the sent items reached the far side (a memory sink, parsed output…) so far. */
  received(): number | Promise<number>;
  /** Releases what the harness itself holds (temp dirs, test servers, containers). */
  close?(): Promise<void>;
}

const settlesWithin = async (what: string, promise: Promise<unknown>, ms = 10_000): Promise<void> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
};

/**
 * The lifecycle contract every component passes (agent/pipeline/types.ts `Component`):
 * shutdown before start, shutdown twice (in a row and concurrently), and start → send → shutdown
 * delivering everything that was sent. Call it at the top level of a test file.
 */
export function lifecycleSuite(name: string, create: () => Promise<LifecycleHarness>): void {
  const withHarness = (title: string, body: (h: LifecycleHarness) => Promise<void>): void => {
    test(`${name}: ${title}`, async (t) => {
      const harness = await create();
      t.after(async () => {
        await harness.component.shutdown();
        await harness.close?.();
      });
      await body(harness);
    });
  };

  withHarness('shutdown before start resolves and delivers nothing', async (h) => {
    await settlesWithin('shutdown() before start()', h.component.shutdown());
    assert.equal(await h.received(), 0);
  });

  withHarness('shutdown twice, in a row and concurrently, resolves every time', async (h) => {
    await h.component.start();
    const sent = await h.send();
    await settlesWithin(
      'two concurrent shutdown() calls',
      Promise.all([h.component.shutdown(), h.component.shutdown()]),
    );
    await settlesWithin('a third shutdown()', h.component.shutdown());
    assert.equal(await h.received(), sent);
  });

  withHarness('start, consume, shutdown delivers everything that was sent', async (h) => {
    await h.component.start();
    const sent = await h.send();
    assert.ok(sent > 0, 'the harness must send something');
    await settlesWithin('shutdown()', h.component.shutdown());
    assert.equal(await h.received(), sent);
  });
}
