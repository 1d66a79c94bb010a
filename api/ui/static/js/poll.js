// Polite polling: one request at a time (the next is scheduled after the last answered), only while
// the tab is visible, slower after errors. A hidden tab costs the server nothing.

export function poll(fn, intervalMs) {
  let timer = null, stopped = false, running = false, failures = 0;

  async function tick() {
    timer = null;
    if (stopped || running) return;
    if (document.visibilityState !== "visible") return; // resumed by the visibilitychange handler
    running = true;
    try {
      const again = await fn();
      failures = 0;
      if (again === false) stopped = true;
    } catch (err) {
      failures += 1;
      console.warn("poll failed", err);
    } finally {
      running = false;
    }
    schedule();
  }

  function schedule() {
    if (stopped || timer !== null) return;
    timer = setTimeout(tick, intervalMs * Math.min(2 ** failures, 8));
  }

  function onVisibility() {
    if (document.visibilityState === "visible" && timer === null && !running) tick();
  }

  document.addEventListener("visibilitychange", onVisibility);
  tick();
  return function stop() {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
