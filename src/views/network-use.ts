/** How full a network is: the live rate of all its peers together against its network cap, per direction. */

/** A network's caps (kbps; 0 = none), as `bw_network_caps` holds them. */
export interface NetworkCapsView {
  totalUpKbps: number;
  totalDownKbps: number;
}

/** One direction of a network's use: the summed live rate, and its share of the network cap (null without one). */
export interface DirectionUse {
  kbps: number;
  percent: number | null;
}

export interface NetworkUse {
  up: DirectionUse;
  down: DirectionUse;
}

const direction = (kbps: number, capKbps: number): DirectionUse => ({
  kbps,
  percent: capKbps > 0 ? Math.round((kbps / capKbps) * 100) : null,
});

/**
 * Sums the live rates of a network's peers (`up` = peers → world, as the network cap counts it)
 * and puts each direction against its network cap.
 * @example networkUse({ totalUpKbps: 30_000, totalDownKbps: 0 }, [{ upKbps: 15_000, downKbps: 2_000 }])
 * // { up: { kbps: 15000, percent: 50 }, down: { kbps: 2000, percent: null } }
 */
export function networkUse(caps: NetworkCapsView, rates: Iterable<{ upKbps: number; downKbps: number }>): NetworkUse {
  let up = 0;
  let down = 0;
  for (const rate of rates) {
    up += rate.upKbps;
    down += rate.downKbps;
  }
  return { up: direction(up, caps.totalUpKbps), down: direction(down, caps.totalDownKbps) };
}
