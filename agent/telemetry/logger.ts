import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/** The agent's root logger: JSON to stderr, so stdout stays free for the stdout exporter and CLI output. */
export function createLogger(level: string = process.env.LABELCAST_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'labelcast' } }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything; for tests and CLI commands that print their own output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
