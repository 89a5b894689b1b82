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
    // class_rates: kbit/s through each subject's HTB class (null: none counted), the bytes its cap governs.
    const { rates, class_rates: classRates = {} } = JSON.parse(event.data);
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
      // Utilisation as the server computes it (src/accounting/utilisation.ts): the class rate where
      // one was counted, else the billed rate.
      const [classUp = null, classDown = null] = classRates[key] ?? [];
      const parts = [];
      if (capUp > 0) parts.push((classUp ?? up) / capUp);
      if (capDown > 0) parts.push((classDown ?? down) / capDown);
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
