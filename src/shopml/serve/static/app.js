// shopml web page: plain JavaScript over the JSON API; no build step.
"use strict";

const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(detail || response.statusText);
  }
  return body;
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function card(item) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.productId = item.product_id;
  const img = document.createElement("img");
  img.src = item.image_url;
  img.alt = item.title || `product ${item.product_id}`;
  const title = document.createElement("div");
  title.className = "t";
  title.textContent = item.title || `#${item.product_id}`;
  const sub = document.createElement("div");
  sub.className = "s";
  sub.textContent = item.score !== undefined
    ? `${item.category || ""} · ${item.score.toFixed(3)}` : (item.category || "");
  div.append(img, title, sub);
  div.addEventListener("click", () => openProduct(item.product_id));
  return div;
}

function fill(grid, items) {
  grid.replaceChildren(...items.map(card));
}

function showTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("hidden", s.id !== `tab-${name}`));
  $("product").classList.add("hidden");
  if (name === "catalog") loadCatalog();
}

async function loadCatalog() {
  const category = $("catalog-category").value;
  const query = category ? `?limit=48&category=${encodeURIComponent(category)}` : "?limit=48";
  try {
    fill($("catalog-grid"), (await api(`/v1/products${query}`)).items);
  } catch (err) {
    $("catalog-grid").textContent = err.message;
  }
}

function drawFanChart(canvas, days) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!days.length) return;
  const pad = 30, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  const top = Math.max(...days.map((d) => d.q90), 1);
  const x = (i) => pad + (days.length === 1 ? w / 2 : (i * w) / (days.length - 1));
  const y = (v) => pad + h - (v / top) * h;
  ctx.fillStyle = "rgba(79,163,255,0.25)";
  ctx.beginPath();
  days.forEach((d, i) => (i ? ctx.lineTo(x(i), y(d.q90)) : ctx.moveTo(x(i), y(d.q90))));
  [...days].reverse().forEach((d, j) => ctx.lineTo(x(days.length - 1 - j), y(d.q10)));
  ctx.fill();
  ctx.strokeStyle = "#1d6fd1";
  ctx.beginPath();
  days.forEach((d, i) => (i ? ctx.lineTo(x(i), y(d.q50)) : ctx.moveTo(x(i), y(d.q50))));
  ctx.stroke();
  ctx.fillStyle = "#667";
  ctx.fillText(`${top.toFixed(1)} units`, 2, pad - 8);
  ctx.fillText(days[0].ds, pad, canvas.height - 8);
  ctx.fillText(days[days.length - 1].ds, canvas.width - pad - 60, canvas.height - 8);
}

async function openProduct(productId) {
  document.querySelectorAll(".tab").forEach((s) => s.classList.add("hidden"));
  $("product").classList.remove("hidden");
  $("product").dataset.productId = productId;
  const product = await api(`/v1/products/${productId}`);
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
    .then((r) => { fill($("similar-grid"), r.items); setStatus($("similar-status"), ""); })
    .catch((err) => { $("similar-grid").replaceChildren(); setStatus($("similar-status"), err.message, true); });
  setStatus($("forecast-status"), "loading…");
  api("/v1/forecast", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ product_ids: [productId], horizon: 28 }),
  })
    .then((r) => { drawFanChart($("forecast-chart"), r.series[0].days); setStatus($("forecast-status"), "median and 10-90% band, units a day"); })
    .catch((err) => setStatus($("forecast-status"), err.message, true));
}

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

async function rankFeed(event) {
  event.preventDefault();
  setStatus($("feed-status"), "ranking…");
  try {
    const page = await api("/v1/products?limit=60");
    const result = await api("/v1/rank", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: Number($("feed-user").value), candidates: page.items.map((p) => p.product_id) }),
    });
    fill($("feed-grid"), result.items);
    setStatus($("feed-status"), `${result.items.length} candidates, best first`);
  } catch (err) {
    $("feed-grid").replaceChildren();
    setStatus($("feed-status"), err.message, true);
  }
}

async function init() {
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("product-close").addEventListener("click", () => showTab("search"));
  $("search-form").addEventListener("submit", search);
  $("feed-form").addEventListener("submit", rankFeed);
  $("catalog-category").addEventListener("change", loadCatalog);
  try {
    const ready = await api("/ready");
    $("ready").textContent = ready.ready ? "ready" : `missing: ${Object.keys(ready.missing).join(", ")}`;
    $("ready").className = `badge ${ready.ready ? "ok" : "warn"}`;
    const categories = await api("/v1/categories");
    for (const select of [$("search-category"), $("catalog-category")]) {
      categories.forEach((c) => select.append(new Option(c, c)));
    }
  } catch (err) {
    $("ready").textContent = "unavailable";
  }
}

init();
