/**
 * A second process for the cross-process lock tests: takes the interface lock the way the plugin
 * does (`new KeyedMutex().run(interfaceLockKey(…))`, lock files in `$PANEL_BANDWIDTH_LOCK_DIR`).
 *
 *   lock-holder.ts hold <ifname> <log>               prints `held`, holds until a line on stdin
 *   lock-holder.ts count <ifname> <log> <file> <n>   n times: read the number in <file>, yield, write it + 1
 *
 * Every critical section appends `start <pid> <ms>` and `end <pid> <ms>` to <log>.
 */
import { appendFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

import { interfaceLockKey, KeyedMutex } from '../../src/shaping/lock.js';

const [mode, ifname, log, counter, times] = process.argv.slice(2);
if (!ifname || !log) throw new Error('usage: lock-holder.ts hold|count <ifname> <log> [<file> <n>]');
const mark = (what: string) => appendFileSync(log, `${what} ${process.pid} ${Date.now()}\n`);
const mutex = new KeyedMutex();

if (mode === 'hold') {
  const lines = createInterface({ input: process.stdin });
  const released = new Promise<void>((resolve) => lines.once('line', () => resolve()));
  await mutex.run(interfaceLockKey(ifname), async () => {
    mark('start');
    process.stdout.write('held\n');
    await released;
    mark('end');
  });
  lines.close();
} else if (mode === 'count' && counter && times) {
  for (let i = 0; i < Number(times); i++) {
    await mutex.run(interfaceLockKey(ifname), async () => {
      mark('start');
      const value = Number(await readFile(counter, 'utf8'));
      await new Promise((resolve) => setImmediate(resolve)); // let the other process in, if it could
      await writeFile(counter, String(value + 1));
      mark('end');
    });
  }
} else {
  throw new Error(`unknown mode ${String(mode)}`);
}
