import type { Logger } from '../../../src/plugin-api.js';

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Level[] = ['debug', 'info', 'warn', 'error'];

/** A line-per-record logger on stderr (`LOG_LEVEL`, default info; `silent` in tests). */
export function createLogger(area: string, level: string = process.env.LOG_LEVEL ?? 'info'): Logger & { child(area: string): Logger } {
  const min = level === 'silent' ? ORDER.length : Math.max(0, ORDER.indexOf(level as Level));
  const write = (at: Level) => (message: string, fields?: Record<string, unknown>) => {
    if (ORDER.indexOf(at) < min) return;
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    process.stderr.write(`${new Date().toISOString()} ${at.toUpperCase()} [${area}] ${message}${extra}\n`);
  };
  return {
    debug: write('debug'),
    info: write('info'),
    warn: write('warn'),
    error: write('error'),
    child: (child: string) => createLogger(`${area}:${child}`, level),
  };
}
