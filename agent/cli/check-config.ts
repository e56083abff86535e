import type { Command } from 'commander';
import type { Config } from '../config/schema.ts';
import { type CliContext, dockerTarget } from './context.ts';

/** `labelcast check-config`: validates the config (file + environment) and the Docker target, connects to nothing. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('check-config')
    .description('validate the configuration (file and LABELCAST_* variables) without starting anything')
    .option('-c, --config <file>', 'YAML config file (default: $LABELCAST_CONFIG, else built-in defaults)')
    .action((opts: { config?: string }) => {
      const config = ctx.loadConfig(opts.config);
      const docker = dockerTarget(config, ctx.env).display;
      const file = opts.config ?? (ctx.env.LABELCAST_CONFIG || undefined);
      ctx.write(`config OK: ${summarize(config, file, docker)}\n`);
    });
}

/** One line: where the config came from, the engine, the components and how they are wired. */
export function summarize(config: Config, file: string | undefined, docker: string): string {
  const parts = [file ?? 'built-in defaults', `docker ${docker}`];
  const receivers = Object.keys(config.receivers);
  const exporters = Object.keys(config.exporters);
  if (receivers.length > 0) parts.push(`receivers ${receivers.join(', ')}`);
  if (exporters.length > 0) parts.push(`exporters ${exporters.join(', ')}`);
  const pipelines = Object.entries(config.pipelines).map(
    ([signal, p]) => `${signal} (${p.receivers.join(', ')} -> ${p.exporters.join(', ')})`,
  );
  parts.push(
    pipelines.length > 0 ? `pipelines ${pipelines.join(', ')}` : 'no pipelines (run uses its default)',
  );
  parts.push(`state ${config.state_dir}`, `log level ${config.telemetry.log_level}`);
  return parts.join('; ');
}
