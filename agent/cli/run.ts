import type { Command } from 'commander';
import { type Agent, createAgent } from '../agent.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createMetricsRegistry, type Registry } from '../telemetry/metrics.ts';
import type { CliContext } from './context.ts';

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** No config file was given: run the default logs pipeline when the config defines none. */
  readonly defaults?: boolean;
  readonly metrics?: Registry;
}

export interface RunningAgent {
  readonly agent: Agent;
  /** Stops receivers, drains the pipeline, flushes checkpoints. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Builds and starts the agent. Throws an AgentError (config, state directory, Docker unreachable)
 * before anything listens or reads logs; a failed start is shut down again before the error surfaces.
 */
export async function runAgent(
  config: Config,
  logger: Logger,
  options: RunOptions = {},
): Promise<RunningAgent> {
  const agent = await createAgent(config, {
    logger,
    metrics: options.metrics ?? createMetricsRegistry(),
    ...(options.env ? { env: options.env } : {}),
    ...(options.defaults ? { defaults: true } : {}),
  });
  try {
    await agent.start();
  } catch (err) {
    await agent.shutdown();
    throw err;
  }
  return { agent, stop: () => agent.shutdown() };
}

/** `labelcast run [--config FILE]`: runs until main.ts aborts `ctx.signal` (SIGTERM/SIGINT), then stops cleanly. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description(
      "collect every container's logs and receive OTLP, enrich them with container labels and export them (no config: json_file or docker_logs, and otlp_http on 127.0.0.1:4318, → stdout)",
    )
    .option(
      '-c, --config <file>',
      'YAML config file (default: $LABELCAST_CONFIG, else the built-in default pipeline)',
    )
    .action(async (opts: { config?: string }) => {
      const file = opts.config ?? (ctx.env.LABELCAST_CONFIG || undefined);
      const config = ctx.loadConfig(file);
      const logger = ctx.logger(config);
      const running = await runAgent(config, logger, { env: ctx.env, defaults: file === undefined });
      if (!ctx.signal.aborted) {
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener('abort', () => resolve(), { once: true }),
        );
      }
      await running.stop();
    });
}
