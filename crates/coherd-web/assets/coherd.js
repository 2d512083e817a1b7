// coherd dashboards: sortable tables, and live updates from /v1/stream.
// Pages work without this script; it only re-reads the page when the fleet changes.
(() => {
  "use strict";
  let sorted = null; // {table index, column, direction} kept across refreshes

  function key(row, col) {
    const cell = row.cells[col];
    if (!cell) return "";
    const v = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    const n = Number(v);
    return v !== "" && !Number.isNaN(n) ? n : v.toLowerCase();
  }

  function sort(table, col, dir) {
    const th = table.tHead && table.tHead.rows[0].cells[col];
    if (!th) return;
    for (const h of table.tHead.rows[0].cells) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a, col), y = key(b, col);
      const r = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return dir === "ascending" ? r : -r;
    });
    for (const r of rows) body.appendChild(r);
  }

  function wire(root) {
    const tables = Array.from(document.querySelectorAll("table.sortable"));
    for (const button of root.querySelectorAll("table.sortable th button[data-col]")) {
      button.addEventListener("click", () => {
        const th = button.closest("th");
        const table = th.closest("table");
        const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        const col = Number(button.dataset.col);
        sorted = { table: tables.indexOf(table), col, dir };
        sort(table, col, dir);
      });
    }
    if (sorted) {
      const table = document.querySelectorAll("table.sortable")[sorted.table];
      if (table) sort(table, sorted.col, sorted.dir);
    }
  }

  let timer = null;
  async function refresh() {
    timer = null;
    try {
      const r = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = doc.getElementById("main");
      const now = document.getElementById("main");
      if (fresh && now) {
        now.replaceWith(fresh);
        wire(fresh);
        document.body.dataset.updated = String(Date.now());
      }
    } catch (e) {
      // The next event or tick tries again.
    }
  }
  function soon() {
    if (!timer) timer = setTimeout(refresh, 300);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire(document);
    const main = document.getElementById("main");
    if (!main || main.dataset.live !== "1") return;
    const status = document.getElementById("live");
    const es = new EventSource("/v1/stream");
    es.addEventListener("open", () => { if (status) status.textContent = "live"; });
    es.addEventListener("error", () => { if (status) status.textContent = "reconnecting…"; });
    for (const name of ["divergence", "intent", "lagged"]) es.addEventListener(name, soon);
    setInterval(soon, 15000);
  });
})();
