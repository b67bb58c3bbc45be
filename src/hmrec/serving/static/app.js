// The demo shop front: plain JavaScript over the JSON API. Data text is only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let currentCustomer = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : response.statusText);
  return data;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? error.message : "";
  box.classList.toggle("hidden", !error);
}

// The data's prices are scaled (mean ~0.028); shown everywhere as price units: the data's price x 1000, e.g. 30.50 pu.
const PRICE_SCALE = 1000;
function price(value) {
  return value === null || value === undefined ? "" : `${(value * PRICE_SCALE).toFixed(2)} pu`;
}

function card(article, options) {
  const item = el("article", "product");
  item.dataset.articleId = article.article_id;
  const picture = el("img");
  picture.src = article.image_url;
  picture.alt = article.name || article.article_id;
  picture.loading = "lazy";
  picture.addEventListener("click", () => showSimilar(article));
  item.append(picture);
  const name = el("a", "name", article.name || article.article_id);
  name.href = "#similar-section";
  name.addEventListener("click", (event) => { event.preventDefault(); showSimilar(article); });
  item.append(name);
  item.append(el("div", "meta", [article.colour, article.product_type].filter(Boolean).join(" · ")));
  const tag = el("div", "price", price(article.price));
  if (article.price !== null && article.price !== undefined) tag.title = `data price ${article.price}`;
  item.append(tag);
  if (options && options.reason) item.append(el("div", "reason", article.reason));
  if (options && options.date) item.append(el("div", "date", "bought " + article.t_dat));
  if (options && options.times) item.append(el("div", "date", `bought ${options.times} time${options.times > 1 ? "s" : ""}`));
  if (options && options.buy) {
    const buy = el("button", "buy", "Buy");
    buy.addEventListener("click", () => purchase(article));
    item.append(buy);
  }
  return item;
}

function renderProfile(customer, buyAgain) {
  $("customer-id").textContent = customer.customer_id + (customer.known ? "" : " (new customer)");
  const list = $("profile");
  list.replaceChildren();
  const s = customer.summary;
  const p = customer.profile;
  const rows = [
    ["Age", p.age === null ? "unknown" : `${p.age} (${p.age_bucket})`],
    ["Club", p.club_member_status || "-"],
    ["Purchases", s.purchase_count],
    ["Last purchase", s.last_purchase || "-"],
    ["Average price", s.average_price === null ? "-" : price(s.average_price)],
    ["Favourite", s.favourite_index_group || "-"],
  ];
  for (const [term, value] of rows) {
    list.append(el("dt", null, term), el("dd", null, value));
  }
  const again = $("buy-again");
  again.replaceChildren(...buyAgain.items.map((a) => card(a, { buy: true, times: a.score })));
  if (!buyAgain.items.length) again.append(el("p", "empty", "Nothing to buy again yet."));
  $("again-section").classList.remove("hidden");
  const history = $("history");
  history.replaceChildren(...customer.recent_purchases.map((a) => card(a, { date: true })));
  if (!customer.recent_purchases.length) history.append(el("p", "empty", "No purchases yet."));
  $("customer").classList.remove("hidden");
}

function renderRecs(answer) {
  $("strategy").textContent = answer.strategy === "cold_start" ? "(popular picks: cold start)" : "(personalised)";
  $("strategy").dataset.strategy = answer.strategy;
  $("took").textContent = `${answer.took_ms.toFixed(1)} ms${answer.cached ? " (cached)" : ""}`;
  $("recs").replaceChildren(...answer.items.map((a) => card(a, { reason: true, buy: true })));
  $("recs-section").classList.remove("hidden");
}

// The customer is kept in the URL (/?customer=ID), so a page can be linked, reloaded and navigated back to.
function customerUrl(customerId) {
  const url = new URL(window.location.href);
  url.searchParams.set("customer", customerId);
  return url.pathname + url.search;
}

async function loadCustomer(customerId, how) {
  showError(null);
  try {
    const path = `/customers/${encodeURIComponent(customerId)}`;
    const [customer, answer, buyAgain] = await Promise.all([
      api("GET", path),
      api("POST", "/recommendations", { customer_id: customerId, k: 12 }),
      api("GET", `${path}/buy-again?k=12`),
    ]);
    if (how === "push" && currentCustomer !== customerId) window.history.pushState({ customer: customerId }, "", customerUrl(customerId));
    currentCustomer = customerId;
    $("customer-input").value = customerId;
    renderProfile(customer, buyAgain);
    renderRecs(answer);
    $("similar-section").classList.add("hidden");
  } catch (error) {
    showError(error);
  }
}

async function purchase(article) {
  if (!currentCustomer) return;
  try {
    await api("POST", "/events/purchases", { customer_id: currentCustomer, article_id: article.article_id });
    await loadCustomer(currentCustomer, "stay");
  } catch (error) {
    showError(error);
  }
}

async function showSimilar(article) {
  showError(null);
  try {
    const answer = await api("GET", `/articles/${article.article_id}/similar?k=8`);
    $("similar-name").textContent = article.name || article.article_id;
    $("similar-method").textContent = answer.method === "same_product_type" ? "(same product type)" : "(by style vectors)";
    $("similar").replaceChildren(...answer.items.map((a) => card(a, { buy: Boolean(currentCustomer) })));
    $("similar-section").classList.remove("hidden");
    $("similar-section").scrollIntoView({ behavior: "smooth" });
  } catch (error) {
    showError(error);
  }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("customer-input").value.trim();
  if (value) loadCustomer(value, "push");
});
for (const button of document.querySelectorAll("button.sample")) {
  button.addEventListener("click", () => {
    $("customer-input").value = button.dataset.customer;
    loadCustomer(button.dataset.customer, "push");
  });
}
window.addEventListener("popstate", () => {
  const customerId = new URLSearchParams(window.location.search).get("customer");
  if (customerId) loadCustomer(customerId, "stay");
});
const linked = new URLSearchParams(window.location.search).get("customer");
if (linked) loadCustomer(linked, "stay");
