// Training curves with uPlot (vendored, MIT): lines for per-step metrics, unconnected markers for
// full-validation points (epoch ends), one chart per quantity (loss, token accuracy).
import uPlot from "../vendor/uplot/uPlot.esm.js";

const COLORS = { train: "#2563eb", valid: "#d97706", full: "#059669" };

function seriesFor(label, color, pointsOnly) {
  return pointsOnly
    ? { label, stroke: color, fill: color, paths: () => null, points: { show: true, size: 9, fill: color } }
    : { label, stroke: color, width: 2, spanGaps: true, points: { show: false } };
}

/**
 * A chart of metric keys against step. `keys`: [train, valid, full] metric names, e.g.
 * ["train_loss", "valid_loss", "full_valid_loss"]. Call update(rows) with every metrics row so far.
 */
export class MetricChart {
  constructor(container, title, keys) {
    this.container = container;
    this.keys = keys;
    this.title = title;
    this.plot = null;
    this.rows = [];
    this.resize = () => this.plot && this.plot.setSize(this.size());
    window.addEventListener("resize", this.resize);
  }

  size() {
    const width = Math.max(260, this.container.clientWidth - 8);
    return { width, height: Math.round(Math.min(280, Math.max(180, width * 0.45))) };
  }

  data() {
    const steps = this.rows.map((r) => r.step);
    return [steps, ...this.keys.map((k) => this.rows.map((r) => (r[k] === undefined ? null : r[k])))];
  }

  update(rows) {
    this.rows = rows;
    this.container.dataset.points = String(rows.length);
    if (!rows.length) return;
    if (!this.plot) {
      this.plot = new uPlot(
        {
          ...this.size(),
          // A step of room on both sides, so the dots at the first and last epoch are not cut.
          scales: { x: { time: false, range: (_u, min, max) => [Math.max(0, min - 1), max + 1] } },
          axes: [{ label: "step" }, {}],
          series: [
            { label: "step" },
            seriesFor("training", COLORS.train, false),
            seriesFor("validation batch", COLORS.valid, false),
            seriesFor("full validation (epoch end)", COLORS.full, true),
          ],
        },
        this.data(),
        this.container,
      );
    } else {
      this.plot.setData(this.data());
    }
  }

  destroy() {
    window.removeEventListener("resize", this.resize);
    if (this.plot) this.plot.destroy();
  }
}
