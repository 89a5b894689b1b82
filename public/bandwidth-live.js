// Live rates from /admin/bandwidth/events (Server-Sent Events), once a second. Progressive
// enhancement: without JavaScript the pages show the rates of the last collector tick.
(() => {
  const rows = new Map();
  for (const element of document.querySelectorAll('[data-subject]')) rows.set(element.dataset.subject, element);
  if (rows.size === 0 || typeof EventSource === 'undefined') return;
  const rate = (kbps) => (kbps >= 1_000_000 ? `${(kbps / 1_000_000).toFixed(2)} Gbps` : kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbps` : `${Math.round(kbps)} kbps`);
  const aggregate = document.querySelector('[data-live-aggregate]');
  const current = new Map();
  const source = new EventSource('/admin/bandwidth/events');
  source.addEventListener('rates', (event) => {
    const { rates } = JSON.parse(event.data);
    for (const [key, value] of Object.entries(rates)) {
      if (value[0] === 0 && value[1] === 0) current.delete(key);
      else current.set(key, value);
      const element = rows.get(key);
      if (!element) continue;
      const [up, down] = value;
      const cell = element.querySelector('[data-live-rate]');
      if (cell) cell.textContent = `${rate(up)} / ${rate(down)}`;
      const capUp = Number(element.dataset.capUp);
      const capDown = Number(element.dataset.capDown);
      const parts = [];
      if (capUp > 0) parts.push(up / capUp);
      if (capDown > 0) parts.push(down / capDown);
      if (parts.length > 0) {
        const use = Math.round(Math.max(...parts) * 100);
        const meter = element.querySelector('[data-live-use]');
        if (meter) meter.value = Math.min(use, 100);
        const text = element.querySelector('[data-live-use-text]');
        if (text) text.textContent = `${use}%`;
      }
    }
    if (aggregate) {
      let up = 0;
      let down = 0;
      for (const [u, d] of current.values()) {
        up += u;
        down += d;
      }
      aggregate.textContent = `${rate(up)} / ${rate(down)}`;
    }
  });
})();
