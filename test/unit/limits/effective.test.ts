import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { effectiveBurst, effectiveCaps, isThrottled } from '../../../src/limits/effective.js';

describe('effective caps', () => {
  test('its own cap wins; a direction without one takes the network default; neither is none', () => {
    assert.deepEqual(effectiveCaps({ upKbps: 2000, downKbps: 0, defaultUpKbps: 1000, defaultDownKbps: 4000 }), {
      upKbps: 2000, downKbps: 4000, source: { up: 'own', down: 'default' },
    });
    assert.deepEqual(effectiveCaps({ upKbps: 0, downKbps: 0 }), { upKbps: 0, downKbps: 0, source: { up: 'none', down: 'none' } });
    assert.deepEqual(effectiveCaps({ upKbps: 500, downKbps: 0, defaultUpKbps: 9000, defaultDownKbps: 0 }).source, { up: 'own', down: 'none' }, 'an own cap below the default stays');
  });

  test('a throttle below the configured cap (own or default) takes over, and throttles an uncapped direction too', () => {
    assert.deepEqual(effectiveCaps({ upKbps: 0, downKbps: 8000, defaultUpKbps: 4000, throttleUpKbps: 256, throttleDownKbps: 0 }), {
      upKbps: 256, downKbps: 8000, source: { up: 'throttle', down: 'own' },
    });
    assert.deepEqual(effectiveCaps({ upKbps: 0, downKbps: 0, defaultDownKbps: 100, throttleUpKbps: 64, throttleDownKbps: 512 }), {
      upKbps: 64, downKbps: 100, source: { up: 'throttle', down: 'default' },
    }, 'a default below the throttle stays');
  });

  test('a burst needs a rate, a size, a cap to burst above, and no throttle in force', () => {
    const burst = { burstKbps: 20_000, burstBytes: 10_000_000 };
    assert.deepEqual(effectiveBurst({ upKbps: 5000, downKbps: 0, ...burst }), { kbps: 20_000, bytes: 10_000_000 });
    assert.deepEqual(effectiveBurst({ upKbps: 0, downKbps: 0, defaultDownKbps: 5000, ...burst }), { kbps: 20_000, bytes: 10_000_000 }, 'a default cap is a cap');
    assert.equal(effectiveBurst({ upKbps: 0, downKbps: 0, ...burst }), undefined, 'nothing to burst above');
    assert.equal(effectiveBurst({ upKbps: 5000, downKbps: 0, burstKbps: 20_000, burstBytes: 0 }), undefined);
    assert.equal(effectiveBurst({ upKbps: 5000, downKbps: 0, burstKbps: 0, burstBytes: 1000 }), undefined);
    const throttled = { upKbps: 5000, downKbps: 5000, throttleUpKbps: 0, throttleDownKbps: 9000, ...burst };
    assert.equal(isThrottled(throttled), true, 'arranged: a throttle in force, above the own cap');
    assert.equal(effectiveBurst(throttled), undefined, 'no speed boost over quota, whichever cap holds');
  });
});
