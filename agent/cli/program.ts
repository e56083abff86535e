import { Command } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { register as registerCheckConfig } from './check-config.ts';
import { register as registerContainers } from './containers.ts';
import type { CliContext } from './context.ts';
import { register as registerImages } from './images.ts';
import { register as registerInspect } from './inspect.ts';

/** Adds one command to the program; `ctx` gives it env, config, logger and the shutdown signal. */
export type Registrar = (program: Command, ctx: CliContext) => void;

/** The one-shot commands, in the order `--help` lists them after any extra (such as `run`). */
const COMMANDS: readonly Registrar[] = [
  registerInspect,
  registerImages,
  registerContainers,
  registerCheckConfig,
];

/**
 * Builds the `labelcast` command tree. Usage errors throw CommanderError (exitOverride) instead of
 * exiting, so main.ts alone decides the exit code.
 */
export function createProgram(ctx: CliContext, extra: readonly Registrar[] = []): Command {
  const program = new Command('labelcast')
    .description(
      'Attaches Docker image and container labels (revision, source, contact) as OpenTelemetry resource attributes to container logs and traces',
    )
    .version(pkg.version, '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.write(s) });
  for (const register of [...extra, ...COMMANDS]) register(program, ctx);
  return program;
}
