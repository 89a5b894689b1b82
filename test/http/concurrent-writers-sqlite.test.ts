// Issue 12, item 1 on sqlite: see test/support/concurrent-writers.ts.
// clock layer: not rerun (minutes of 400 concurrent writers; nothing in it reads the date).
import { concurrentWriters } from '../support/concurrent-writers.js';

concurrentWriters('sqlite');
