// shopml web page: plain JavaScript over the JSON API; no build step.
// Every screen has a hash route, so the back button works and a link can be shared:
//   #/search   #/catalog?q=pink&category=phones&page=2   #/feed/72   #/product/75
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 48;
const SOURCE_LABELS = { looks_like: "looks like", also_viewed: "others also viewed", popular: "popular in its category" };

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || response.statusText);  // problem details
  return body;
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function card(item, extra) {
  const a = document.createElement("a");
  a.className = "card";
  a.href = `#/product/${item.product_id}`;
  a.dataset.productId = item.product_id;
  const img = document.createElement("img");
  img.src = item.image_url;
  img.alt = item.title || `product ${item.product_id}`;
  img.loading = "lazy";
  const title = document.createElement("div");
  title.className = "t";
  title.textContent = item.title || `#${item.product_id}`;
  const sub = document.createElement("div");
  sub.className = "s";
  sub.textContent = item.score !== undefined
    ? `${item.category || ""} · ${item.score.toFixed(3)}` : `${item.category || ""}${item.price ? ` · ${item.price.toFixed(2)}` : ""}`;
  a.append(img, title, sub);
  if (extra) a.append(extra);
  return a;
}

function fill(grid, items, extra) {
  grid.replaceChildren(...items.map((item) => card(item, extra && extra(item))));
}

// ------------------------------------------------------------------------------------ routing
function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "") || "search";
  const [path, query = ""] = hash.split("?");
  const [name, arg] = path.split("/");
  return { name, arg, params: new URLSearchParams(query) };
}

function show(tab) {
  document.querySelectorAll("nav a[data-tab]").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("hidden", s.id !== `tab-${tab}`));
}

async function route() {
  const { name, arg, params } = parseRoute();
  if (name === "product" && arg) { show("product"); return openProduct(Number(arg)); }
  if (name === "catalog") { show("catalog"); return loadCatalog(params); }
  if (name === "feed") { show("feed"); return loadFeed(arg); }
  show("search");
}

// ------------------------------------------------------------------------------------ catalog
async function loadCatalog(params) {
  const page = Math.max(1, Number(params.get("page")) || 1);
  const q = params.get("q") || "", category = params.get("category") || "";
  $("catalog-q").value = q;
  $("catalog-category").value = category;
  const query = new URLSearchParams({ limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE });
  if (q) query.set("q", q);
  if (category) query.set("category", category);
  setStatus($("catalog-status"), "loading…");
  try {
    const result = await api(`/v1/products?${query}`);
    fill($("catalog-grid"), result.items);
    const pages = Math.max(1, Math.ceil(result.total / PAGE_SIZE));
    setStatus($("catalog-status"), `${result.total.toLocaleString("en")} products${q ? ` matching “${q}”` : ""}`);
    $("catalog-page").textContent = `page ${page} of ${pages}`;
    const link = (p) => { const s = new URLSearchParams(params); s.set("page", p); return `#/catalog?${s}`; };
    $("catalog-prev").href = link(page - 1);
    $("catalog-next").href = link(page + 1);
    $("catalog-prev").classList.toggle("disabled", page <= 1);
    $("catalog-next").classList.toggle("disabled", page >= pages);
  } catch (err) {
    $("catalog-grid").replaceChildren();
    setStatus($("catalog-status"), err.message, true);
  }
}

function catalogSubmit(event) {
  event.preventDefault();
  const s = new URLSearchParams();
  if ($("catalog-q").value.trim()) s.set("q", $("catalog-q").value.trim());
  if ($("catalog-category").value) s.set("category", $("catalog-category").value);
  location.hash = `#/catalog${s.toString() ? `?${s}` : ""}`;
}

// ------------------------------------------------------------------------------------ product
function niceStep(span, target = 5) {
  const raw = span / target, mag = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= target + 1);
}

// Past sales (line), then the forecast: 10-90% band, median and mean; axes with ticks.
function drawChart(canvas, past, days) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 52, R = 16, T = 24, B = 44;
  ctx.clearRect(0, 0, W, H);
  const n = past.length + days.length;
  if (!n) return;
  const top = Math.max(1, ...past.map((d) => d.units), ...days.map((d) => d.q90));
  const step = niceStep(top), ymax = Math.ceil(top / step) * step;
  const x = (i) => L + (n === 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / ymax);
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#556"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let v = 0; v <= ymax + 1e-9; v += step) {  // y ticks and grid
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - R, y(v)); ctx.stroke();
    ctx.fillText(Number(v.toFixed(6)).toLocaleString("en"), L - 6, y(v));
  }
  const dates = [...past.map((d) => d.ds), ...days.map((d) => d.ds)];
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let i = 0; i < n; i += 7) {  // x ticks: one a week
    ctx.beginPath(); ctx.moveTo(x(i), H - B); ctx.lineTo(x(i), H - B + 5); ctx.strokeStyle = "#889"; ctx.stroke();
    ctx.fillText(dates[i].slice(5), x(i), H - B + 8);
  }
  ctx.strokeStyle = "#889";
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  ctx.save(); ctx.translate(14, (T + H - B) / 2); ctx.rotate(-Math.PI / 2);
  ctx.fillText("units a day", 0, 0); ctx.restore();
  ctx.fillText("date (MM-DD)", (L + W - R) / 2, H - 18);
  const f0 = past.length;
  if (days.length) {
    ctx.fillStyle = "rgba(79,163,255,0.25)";  // 10-90% band
    ctx.beginPath();
    days.forEach((d, i) => (i ? ctx.lineTo(x(f0 + i), y(d.q90)) : ctx.moveTo(x(f0 + i), y(d.q90))));
    [...days].reverse().forEach((d, j) => ctx.lineTo(x(f0 + days.length - 1 - j), y(d.q10)));
    ctx.fill();
    const line = (key, color, dash) => {
      ctx.strokeStyle = color; ctx.setLineDash(dash); ctx.lineWidth = 2; ctx.beginPath();
      days.forEach((d, i) => (i ? ctx.lineTo(x(f0 + i), y(d[key])) : ctx.moveTo(x(f0 + i), y(d[key]))));
      ctx.stroke(); ctx.setLineDash([]); ctx.lineWidth = 1;
    };
    line("q50", "#1d6fd1", []);
    line("mean", "#1d6fd1", [4, 3]);
    ctx.strokeStyle = "#b0b6c0"; ctx.setLineDash([2, 3]);  // where the forecast starts
    ctx.beginPath(); ctx.moveTo(x(f0), T); ctx.lineTo(x(f0), H - B); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#556"; ctx.textAlign = "left"; ctx.fillText("forecast →", x(f0) + 4, T - 18);
  }
  if (past.length) {
    ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 1.5; ctx.beginPath();
    past.forEach((d, i) => (i ? ctx.lineTo(x(i), y(d.units)) : ctx.moveTo(x(i), y(d.units))));
    ctx.stroke(); ctx.lineWidth = 1;
    ctx.fillStyle = "#556"; ctx.textAlign = "right"; ctx.fillText("← actual sales", x(f0) - 6, T - 18);
  }
}

function forecastTable(days) {
  $("forecast-table").tBodies[0].replaceChildren(...days.map((d) => {
    const tr = document.createElement("tr");
    for (const v of [d.ds, d.mean, d.q10, d.q50, d.q90]) {
      const td = document.createElement("td");
      td.textContent = typeof v === "number" ? v.toFixed(4) : v;
      tr.append(td);
    }
    return tr;
  }));
}

async function openProduct(productId) {
  $("tab-product").dataset.productId = productId;
  let product;
  try {
    product = await api(`/v1/products/${productId}`);
  } catch (err) {
    $("product-title").textContent = err.message;
    return;
  }
  $("product-image").src = product.image_url;
  $("product-title").textContent = product.title || `#${productId}`;
  const fields = ["product_id", "category", "brand", "price", "style_id", "color", "pattern"];
  $("product-fields").replaceChildren(...fields.filter((f) => product[f] !== undefined).flatMap((f) => {
    const dt = document.createElement("dt"); dt.textContent = f;
    const dd = document.createElement("dd"); dd.textContent = product[f];
    return [dt, dd];
  }));
  setStatus($("similar-status"), "loading…");
  api(`/v1/products/${productId}/similar?k=12`)
    .then((r) => { fill($("similar-grid"), r.items); setStatus($("similar-status"), "same category, one per style"); })
    .catch((err) => { $("similar-grid").replaceChildren(); setStatus($("similar-status"), err.message, true); });
  setStatus($("forecast-status"), "loading…");
  const body = JSON.stringify({ product_ids: [productId], horizon: 28 });
  Promise.all([
    api("/v1/forecast", { method: "POST", headers: { "Content-Type": "application/json" }, body }),
    api(`/v1/products/${productId}/sales?days=56`),
  ])
    .then(([forecast, sales]) => {
      const days = forecast.series[0].days;
      drawChart($("forecast-chart"), sales.days, days);
      forecastTable(days);
      setStatus($("forecast-status"), "last 8 weeks of actual sales, then 28 days of forecast: median (solid), mean (dashed) and the 10-90% band");
    })
    .catch((err) => setStatus($("forecast-status"), err.message, true));
}

// ------------------------------------------------------------------------------------ search
async function search(event) {
  event.preventDefault();
  const file = $("search-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  const query = new URLSearchParams({ k: $("search-k").value });
  if ($("search-category").value) query.set("category", $("search-category").value);
  setStatus($("search-status"), "searching…");
  try {
    const result = await api(`/v1/visual/search?${query}`, { method: "POST", body: form });
    fill($("search-results"), result.items);
    setStatus($("search-status"), `${result.items.length} products`);
  } catch (err) {
    $("search-results").replaceChildren();
    setStatus($("search-status"), err.message, true);
  }
}

// ------------------------------------------------------------------------------------ feed
async function loadFeed(userId) {
  if (!$("feed-user").options.length) {
    try {
      const users = await api("/v1/users?limit=50");
      users.forEach((u) => $("feed-user").append(new Option(`user ${u.user_id} · ${u.events} events`, u.user_id)));
    } catch (err) {
      setStatus($("feed-status"), err.message, true);
      return;
    }
  }
  if (!userId) userId = $("feed-user").value;  // the default: the most active user
  if (!userId) return;
  $("feed-user").value = userId;
  setStatus($("feed-status"), "ranking…");
  try {
    const feed = await api(`/v1/users/${userId}/feed?k=24`);
    const seen = Object.fromEntries(feed.history.map((h) => [h.product_id, h]));
    fill($("feed-history"), feed.history);
    fill($("feed-grid"), feed.items, (item) => {
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = `${item.sources.map((s) => SOURCE_LABELS[s] || s).join(", ")} · because of `;
      item.because.slice(0, 3).forEach((pid) => {
        const img = document.createElement("img");
        img.src = seen[pid] ? seen[pid].image_url : `/v1/products/${pid}/image`;
        img.alt = img.title = seen[pid] ? seen[pid].title : `#${pid}`;
        why.append(img);
      });
      return why;
    });
    setStatus($("feed-status"), `${feed.items.length} of ${feed.candidates} candidates from the history, ordered by the ranking model`);
  } catch (err) {
    $("feed-grid").replaceChildren();
    $("feed-history").replaceChildren();
    setStatus($("feed-status"), err.message, true);
  }
}

// ------------------------------------------------------------------------------------ start
async function init() {
  $("search-form").addEventListener("submit", search);
  $("catalog-form").addEventListener("submit", catalogSubmit);
  $("catalog-category").addEventListener("change", catalogSubmit);
  $("feed-form").addEventListener("submit", (e) => { e.preventDefault(); location.hash = `#/feed/${$("feed-user").value}`; });
  $("product-back").addEventListener("click", (e) => {
    if (history.length > 1) { e.preventDefault(); history.back(); }
  });
  window.addEventListener("hashchange", route);
  try {
    const categories = await api("/v1/categories");
    for (const select of [$("search-category"), $("catalog-category")]) {
      categories.forEach((c) => select.append(new Option(c, c)));
    }
  } catch (err) { /* the badge below says why */ }
  route();
  try {
    const ready = await api("/ready");
    $("ready").textContent = ready.ready ? "ready" : `missing: ${Object.keys(ready.missing).join(", ")}`;
    $("ready").className = `badge ${ready.ready ? "ok" : "warn"}`;
  } catch (err) {
    $("ready").textContent = "unavailable";
  }
}

init();
