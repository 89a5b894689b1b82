import type { Logger } from './plugin-api.js';

/**
 * Runs `task` now and then every `intervalMs`, never overlapping itself: a run that is still going
 * when the next is due makes the next one wait for it. `stop()` waits for a run in progress.
 */
export class IntervalLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly name: string,
    private readonly task: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
      throw new TypeError(`Expected \`intervalMs\` to be a finite number > 0, got \`${intervalMs}\` (${typeof intervalMs})`);
    }
  }

  start(): void {
    void this.runOnce();
  }

  /** Runs the task now (or waits for the run in progress) and reschedules. */
  runOnce(): Promise<void> {
    if (this.running) return this.running;
    clearTimeout(this.timer);
    this.running = this.task()
      .then(
        () => undefined,
        (error: unknown) => this.logger.error(`${this.name} failed`, { error: (error as Error).message }),
      )
      .finally(() => {
        this.running = undefined;
        if (!this.stopped) {
          this.timer = setTimeout(() => void this.runOnce(), this.intervalMs);
          this.timer.unref();
        }
      });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
