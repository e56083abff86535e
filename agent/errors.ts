/** Stable error codes: scripts and tests match on these, never on message text. */
export type ErrorCode =
  | 'LABELCAST_ERR_CONFIG_INVALID'
  | 'LABELCAST_ERR_DOCKER_UNAVAILABLE'
  | 'LABELCAST_ERR_DOCKER_API_VERSION'
  | 'LABELCAST_ERR_NOT_FOUND'
  | 'LABELCAST_ERR_STATE'
  | 'LABELCAST_ERR_EXPORT';

/**
 * An error the agent expects and can explain. The message puts the action first, then the detail
 * after a colon, then the fix where there is one. `retryable` keeps "retry or not" in data.
 */
export class AgentError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

export class ConfigError extends AgentError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('LABELCAST_ERR_CONFIG_INVALID', message, options);
  }
}

export class DockerUnavailableError extends AgentError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('LABELCAST_ERR_DOCKER_UNAVAILABLE', message, { ...options, retryable: true });
  }
}

export class DockerApiVersionError extends AgentError {
  constructor(message: string) {
    super('LABELCAST_ERR_DOCKER_API_VERSION', message);
  }
}

export class NotFoundError extends AgentError {
  constructor(message: string) {
    super('LABELCAST_ERR_NOT_FOUND', message);
  }
}

export class StateError extends AgentError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('LABELCAST_ERR_STATE', message, options);
  }
}
