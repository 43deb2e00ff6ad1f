// Chart.js (loaded as a classic script: window.Chart) in Preact: one canvas, drawn again when its data change.
import { html, useEffect, useRef } from "../vendor/preact-htm.js";

export const COLORS = ["#2456d3", "#e8833a", "#2e9e5b", "#b34fc7", "#d33f49", "#1aa3b8", "#8c6d1f", "#6b7280"];

/** A chart with a text alternative: `summary` is what a screen reader hears instead of the picture. */
export function ChartBox({ title, summary, config, id }) {
  const canvas = useRef(null);
  useEffect(() => {
    if (!window.Chart || !canvas.current) return undefined;
    const chart = new window.Chart(canvas.current, {
      ...config,
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        ...config.options,
      },
    });
    return () => chart.destroy();
  }, [JSON.stringify(config.data), JSON.stringify(config.options || {})]);
  return html`<figure class="card chart-card" id=${id}>
    <figcaption><h2>${title}</h2></figcaption>
    <div class="chart"><canvas ref=${canvas} role="img" aria-label=${summary}></canvas></div>
  </figure>`;
}
