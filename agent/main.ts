#!/usr/bin/env node
/**
 * The `labelcast` entry point: the only place that reads argv and the environment, installs signal
 * handlers and exits. Commands report failure by throwing; expected errors print one line.
 */
import { constants } from 'node:os';
import { CommanderError } from 'commander';
import type { CliContext } from './cli/context.ts';
import { createProgram } from './cli/program.ts';
import { register as registerRun } from './cli/run.ts';
import { loadConfig } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { AgentError } from './errors.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';

/** Exit codes: 0 success, 1 an error (config, Docker, not found…), 2 a usage error. */
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

const env = process.env;
const shutdown = new AbortController();
let logger: Logger | undefined;
let longRunning = false;

const ctx: CliContext = {
  env,
  signal: shutdown.signal,
  write: (text) => {
    process.stdout.write(text);
  },
  loadConfig: (file) => loadConfig({ file, env }),
  logger: (config: Config) => {
    logger ??= createLogger(config.telemetry.log_level);
    return logger;
  },
};

async function exit(code: number): Promise<never> {
  const log = logger;
  if (log) await new Promise<void>((resolve) => log.flush(() => resolve()));
  process.exit(code);
}

function onSignal(signal: NodeJS.Signals): void {
  // `run` gets one chance to flush and stop; a one-shot command, or a second signal, ends at once.
  if (longRunning && !shutdown.signal.aborted) {
    logger?.info({ signal }, 'shutting down');
    shutdown.abort(new Error(`received ${signal}`));
    return;
  }
  void exit(128 + (constants.signals[signal] ?? 0));
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// `labelcast images | head` closes the pipe early: that ends the output, it is not a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') void exit(0);
  else throw err;
});

const program = createProgram(ctx, [registerRun]);
program.hook('preAction', (_program, action) => {
  longRunning = action.name() === 'run';
});

try {
  await program.parseAsync(process.argv);
  await exit(0);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has already printed the usage error (or the help/version text, with exit code 0).
    await exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  }
  if (err instanceof AgentError) {
    process.stderr.write(`${err.message}\n`);
  } else {
    logger?.error({ err }, 'unexpected error');
    process.stderr.write(
      `Unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  await exit(EXIT_ERROR);
}
