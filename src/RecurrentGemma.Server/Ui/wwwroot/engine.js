// The engine panel: GET /v1/engine/status every two seconds (with the API key, like the API).

import { getJson } from "./api.js";

export function startEnginePanel(panel, onStatus) {
  const set = (k, v) => { panel.querySelector(`[data-k="${k}"]`).textContent = v; };
  async function tick() {
    try {
      const s = await getJson("/v1/engine/status");
      set("slots", `${s.slots_used} / ${s.slots_total}`);
      set("parked", String(s.slots_parked));
      set("host", String(s.host_states));
      set("running", String(s.running_sequences));
      set("waiting", String(s.queued_requests));
      set("step", s.recent_step_ms > 0 ? `${s.recent_step_ms.toFixed(1)} ms` : "–");
      onStatus(s, null);
    } catch (e) {
      onStatus(null, e);
    }
  }
  tick();
  return setInterval(tick, 2000);
}
