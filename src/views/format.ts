/** `512 kbps`, `10 Mbps`, `2.5 Gbps`; 0 is `Unlimited`. */
export function formatKbps(kbps: number): string {
  if (kbps === 0) return 'Unlimited';
  if (kbps >= 1_000_000) return `${+(kbps / 1_000_000).toFixed(2)} Gbps`;
  if (kbps >= 1000) return `${+(kbps / 1000).toFixed(2)} Mbps`;
  return `${kbps} kbps`;
}

/**
 * Up / down caps as a table shows them: `10 / 50 Mbps` when both share a unit, `512 kbps / 2 Mbps`
 * otherwise, `Unlimited / 50 Mbps` for one direction, `Unlimited` for none.
 */
export function formatCaps(upKbps: number, downKbps: number): string {
  if (upKbps === 0 && downKbps === 0) return 'Unlimited';
  const up = formatKbps(upKbps);
  const down = formatKbps(downKbps);
  const unit = (text: string) => text.split(' ')[1];
  if (upKbps > 0 && downKbps > 0 && unit(up) === unit(down)) return `${up.split(' ')[0]} / ${down}`;
  return `${up} / ${down}`;
}

/** Bytes in binary units: `0 B`, `1.5 KiB`, `12.3 GiB`. Exact input (bigint), display rounded. */
export function formatBytes(bytes: bigint | number): string {
  const value = Number(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let unit = 0;
  let scaled = value;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${scaled >= 100 ? scaled.toFixed(0) : scaled.toFixed(1)} ${units[unit]}`;
}

/** A measured rate in kbit/s as `950 kbps`, `12.4 Mbps`. */
export function formatRate(kbps: number): string {
  if (kbps >= 1_000_000) return `${(kbps / 1_000_000).toFixed(2)} Gbps`;
  if (kbps >= 1000) return `${(kbps / 1000).toFixed(1)} Mbps`;
  return `${Math.round(kbps)} kbps`;
}
