// A sky map in the Hammer-Aitoff projection (ra increasing to the left, as the sky is seen),
// drawing HEALPix cells given as (ra, dec) polygons, and cones. No library: a canvas.
"use strict";

const SkyMap = (() => {
  const R2 = Math.SQRT2;

  function project(ra, dec) {
    const lon = ((ra % 360) + 360) % 360 - 180;  // [-180, 180), ra = 180 at the centre
    const l = lon * Math.PI / 180, b = dec * Math.PI / 180;
    const z = Math.sqrt(1 + Math.cos(b) * Math.cos(l / 2));
    return [-2 * R2 * Math.cos(b) * Math.sin(l / 2) / z, R2 * Math.sin(b) / z];
  }

  function toCanvas(canvas, xy) {
    const w = canvas.width, h = canvas.height, s = Math.min(w / (4 * R2), h / (2 * R2)) * 0.96;
    return [w / 2 + xy[0] * s, h / 2 - xy[1] * s];
  }

  function outline(canvas, ctx) {
    ctx.beginPath();
    for (let i = 0; i <= 180; i++) {
      const dec = -90 + i;
      const p = toCanvas(canvas, project(360 - 1e-9, dec));
      i ? ctx.lineTo(...p) : ctx.moveTo(...p);
    }
    for (let i = 0; i <= 180; i++) {
      const p = toCanvas(canvas, project(1e-9, 90 - i));
      ctx.lineTo(...p);
    }
    ctx.closePath();
  }

  function grid(canvas, ctx) {
    ctx.strokeStyle = "#c9d3e0";
    ctx.lineWidth = 0.6;
    for (let dec = -60; dec <= 60; dec += 30) {
      ctx.beginPath();
      for (let ra = 0; ra <= 360; ra += 3) {
        const p = toCanvas(canvas, project(ra === 360 ? 360 - 1e-9 : ra + 1e-9, dec));
        ra ? ctx.lineTo(...p) : ctx.moveTo(...p);
      }
      ctx.stroke();
    }
    for (let ra = 0; ra < 360; ra += 30) {
      ctx.beginPath();
      for (let dec = -90; dec <= 90; dec += 3) {
        const p = toCanvas(canvas, project(ra, dec));
        dec > -90 ? ctx.lineTo(...p) : ctx.moveTo(...p);
      }
      ctx.stroke();
    }
    ctx.fillStyle = "#5b6b80";
    ctx.font = "10px sans-serif";
    for (let ra = 0; ra < 360; ra += 60) {
      const p = toCanvas(canvas, project(ra, 0));
      ctx.fillText(`${ra}°`, p[0] + 2, p[1] - 2);
    }
  }

  // One polygon, split at the ra = 0 meridian seam (the map's edge) when it crosses it.
  function polygon(canvas, ctx, verts) {
    const lon = verts.map(([ra]) => ((ra % 360) + 360) % 360 - 180);
    const crosses = Math.max(...lon) - Math.min(...lon) > 180;
    const sides = crosses ? [1, -1] : [0];
    for (const side of sides) {
      ctx.beginPath();
      verts.forEach(([ra, dec], i) => {
        let l = lon[i];
        if (side === 1 && l < 0) l = 179.999;
        if (side === -1 && l > 0) l = -179.999;
        const p = toCanvas(canvas, project(l + 180, dec));
        i ? ctx.lineTo(...p) : ctx.moveTo(...p);
      });
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
  }

  function cone(ra, dec, r) {
    // The cone's edge as a polygon of 72 points.
    const out = [], a0 = ra * Math.PI / 180, d0 = dec * Math.PI / 180, rr = r * Math.PI / 180;
    for (let i = 0; i < 72; i++) {
      const t = 2 * Math.PI * i / 72;
      const d = Math.asin(Math.sin(d0) * Math.cos(rr) + Math.cos(d0) * Math.sin(rr) * Math.cos(t));
      const a = a0 + Math.atan2(Math.sin(t) * Math.sin(rr) * Math.cos(d0), Math.cos(rr) - Math.sin(d0) * Math.sin(d));
      out.push([a * 180 / Math.PI, d * 180 / Math.PI]);
    }
    return out;
  }

  // Draws the map: cells (list of polygons) filled blue, cones outlined orange.
  function draw(canvas, cells, cones) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.save();
    outline(canvas, ctx);
    ctx.fillStyle = "#f4f7fb";
    ctx.fill();
    ctx.clip();
    grid(canvas, ctx);
    ctx.fillStyle = "rgba(35, 99, 197, 0.55)";
    ctx.strokeStyle = "rgba(20, 60, 140, 0.9)";
    ctx.lineWidth = 0.5;
    for (const c of cells || []) polygon(canvas, ctx, c);
    ctx.fillStyle = "rgba(240, 140, 20, 0.25)";
    ctx.strokeStyle = "#e07b00";
    ctx.lineWidth = 1.5;
    for (const [ra, dec, r] of cones || []) polygon(canvas, ctx, cone(ra, dec, r));
    ctx.restore();
    ctx.strokeStyle = "#5b6b80";
    ctx.lineWidth = 1;
    outline(canvas, ctx);
    ctx.stroke();
    canvas.dataset.cells = String((cells || []).length);
    canvas.dataset.cones = String((cones || []).length);
  }

  return { draw, project };
})();
