/**
 * `panel-bandwidth agent`: the node's agent as a process. It needs no panel database: its state
 * is its own SQLite file, and its first reconcile restores the caps after a reboot.
 */
import { readFileSync } from 'node:fs';

import { chooseExecutor, findTc } from '../../limits/executor-choice.js';
import type { Logger } from '../../plugin-api.js';
import { AgentCore } from './core.js';
import { AGENT_USAGE, AgentFlagError, parseAgentFlags } from './flags.js';
import { createAgentServer } from './server.js';

/** Lines on stderr (the journal under systemd), tagged by area. */
const stderrLogger: Logger = {
  debug: () => {},
  info: (message, fields) => console.error(`${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`),
  warn: (message, fields) => console.error(`warn: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`),
  error: (message, fields) => console.error(`error: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`),
};

/** The URL a listener answers on: `http://[::1]:9731`. */
export const listenUrl = (tls: boolean, host: string, port: number): string => `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;

/**
 * Runs the agent until SIGTERM or SIGINT, then closes the server and the core.
 * @returns the exit code: 0 stopped by a signal, 1 failed to start, 2 bad flags or no `tc`.
 */
export async function runAgent(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  let config;
  try {
    config = parseAgentFlags(argv, env, { readFile: (path) => readFileSync(path, 'utf8'), findTc });
  } catch (error) {
    if (!(error instanceof AgentFlagError)) throw error;
    console.error(`panel-bandwidth agent: ${error.message}\n\n${AGENT_USAGE}`);
    return 2;
  }
  if (config === 'help') {
    console.log(AGENT_USAGE);
    return 0;
  }
  const logger = stderrLogger;
  const choice = chooseExecutor(config.executor);
  let core: AgentCore;
  try {
    core = await AgentCore.open({
      node: config.node,
      statePath: config.statePath,
      executor: choice.executor,
      mode: choice.mode,
      modeReason: choice.reason,
      logger,
      ledgerDays: config.ledgerDays,
      billing: config.billing,
      vmSource: config.vmSource,
    });
  } catch (error) {
    console.error(`panel-bandwidth agent: cannot open the state \`${config.statePath}\` (--state): ${(error as Error).message}`);
    return 1;
  }
  const server = createAgentServer({ core, token: config.token, logger, ...(config.tls ? { tls: config.tls } : {}) });
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let bound;
  try {
    core.start({ collectIntervalS: config.collectIntervalS, reconcileIntervalS: config.reconcileIntervalS });
    bound = await server.listen(config.listen.host, config.listen.port);
  } catch (error) {
    console.error(`panel-bandwidth agent: cannot listen on ${listenUrl(config.tls !== null, config.listen.host, config.listen.port)} (--listen): ${(error as Error).message}`);
    await server.close();
    await core.close();
    return 1;
  }
  console.error(`agent ${config.node} listening on ${listenUrl(config.tls !== null, bound.host, bound.port)} (${choice.mode}: ${choice.reason})`);
  const signal = await stopped;
  console.error(`agent ${config.node}: ${signal}, stopping`);
  // A second signal while closing stops at once.
  const force = () => process.exit(1);
  process.once('SIGTERM', force);
  process.once('SIGINT', force);
  await server.close();
  await core.close();
  process.off('SIGTERM', force);
  process.off('SIGINT', force);
  return 0;
}
