// Progressive enhancement for the bandwidth fields: an Mbps reading beside each kbps input, and the
// "unlimited" box kept in step with the number. Without this file the box starts unchecked and only
// a deliberate tick clears a cap, so a number typed into a fresh form is never overridden.
(() => {
  // Under a network default, 0 means the default, not unlimited: the partial says so in data-zero-label.
  const describe = (kbps, zero) => {
    if (!/^\d{1,9}$/.test(kbps)) return 'whole kbps, e.g. 10000 = 10 Mbps';
    const value = Number(kbps);
    if (value === 0) return zero || 'unlimited';
    if (value >= 1_000_000) return `= ${+(value / 1_000_000).toFixed(3)} Gbps`;
    if (value >= 1000) return `= ${+(value / 1000).toFixed(3)} Mbps`;
    return `= ${value} kbps`;
  };
  for (const input of document.querySelectorAll('input[data-mbps-helper]')) {
    const form = input.form;
    const helper = form && form.querySelector(`[data-mbps-for="${input.name}"]`);
    const box = form && form.querySelector(`input[name="${input.name.replace('_kbps', '_unlimited')}"]`);
    const update = () => {
      if (helper) helper.textContent = describe(input.value.trim(), input.dataset.zeroLabel);
      if (box) box.checked = input.value.trim() === '0';
    };
    input.addEventListener('input', update);
    if (box) {
      box.addEventListener('change', () => {
        if (box.checked) input.value = '0';
        update();
      });
    }
    update();
  }
})();
