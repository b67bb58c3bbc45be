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
  if (!response.ok) {
    const error = new Error(typeof data.detail === "string" ? data.detail : response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? error.message : "";
  box.classList.toggle("hidden", !error);
}

// What a shopper is told about a customer id the API would refuse (its pattern: 1-64 of [0-9a-zA-Z_-]); the API's
// own error details stay as they are, for programs.
const MAX_ID = 64;
function customerIdProblem(value) {
  if (!value) return "Type a customer id first, or pick one of the samples.";
  if (value.length > MAX_ID) return `A customer id has at most ${MAX_ID} characters; this one has ${value.length}.`;
  if (value.includes("/")) return "A customer id cannot contain a slash (/).";
  const bad = [...new Set(value.replace(/[0-9a-zA-Z_-]/g, ""))];
  if (bad.length) {
    const shown = bad.map((c) => (c === " " ? "spaces" : `"${c}"`)).join(", ");
    return `A customer id has only letters, digits, - and _; remove ${shown}.`;
  }
  return null;
}

// A short note that a purchase went through; it stays until the next one replaces it.
function confirmPurchase(text) {
  const box = $("toast");
  box.textContent = text;
  box.classList.remove("hidden");
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
  name.title = article.name || article.article_id;  // the whole title when the card shows two lines of it
  name.href = "#similar-section";
  name.addEventListener("click", (event) => { event.preventDefault(); showSimilar(article); });
  item.append(name);
  item.append(el("div", "meta", [article.colour, article.product_type].filter(Boolean).join(" · ")));
  // one price per card, said which: what this customer paid (their purchases) or the catalogue's median price
  const label = options && options.paid ? "you paid" : "price";
  const tag = el("div", "price", article.price === null || article.price === undefined ? "" : `${label} ${price(article.price)}`);
  if (article.price !== null && article.price !== undefined) tag.title = `data price ${article.price}`;
  item.append(tag);
  if (options && options.reason) item.append(el("div", "reason", article.reason));
  if (options && options.date) item.append(el("div", "date", "bought " + article.t_dat));
  if (options && options.times) item.append(el("div", "date", `bought ${options.times} time${options.times > 1 ? "s" : ""}`));
  if (options && options.buy) {
    const buy = el("button", "buy", "Buy");
    // the rail's request id credits the purchase to what was shown; one event id per button, so a retried Buy
    // (after a 503 or a lost answer) is stored once
    const eventId = newEventId();
    buy.addEventListener("click", () => purchase(article, options.requestId, eventId));
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
  again.dataset.requestId = buyAgain.request_id;
  again.replaceChildren(...buyAgain.items.map((a) => card(a, { buy: true, times: a.score, requestId: buyAgain.request_id })));
  if (!buyAgain.items.length) again.append(el("p", "empty", "Nothing to buy again yet."));
  $("again-section").classList.remove("hidden");
  const history = $("history");
  history.replaceChildren(...customer.recent_purchases.map((a) => card(a, { date: true, paid: true })));
  if (!customer.recent_purchases.length) history.append(el("p", "empty", "No purchases yet."));
  $("customer").classList.remove("hidden");
}

// The rail "Recommended for you" leaves out what "Buy again" already shows: the page asks for more than it shows
// and keeps the first RECS_SHOWN others (the API's answer, the one evaluated, is unchanged).
const RECS_SHOWN = 12;
const RECS_ASKED = 24;
function renderRecs(answer, shownElsewhere) {
  const items = answer.items.filter((a) => !shownElsewhere.has(a.article_id)).slice(0, RECS_SHOWN);
  $("strategy").textContent = answer.strategy === "cold_start" ? "(popular picks: cold start)" : "(personalised)";
  $("strategy").dataset.strategy = answer.strategy;
  $("took").textContent = `${answer.took_ms.toFixed(1)} ms${answer.cached ? " (cached)" : ""}`;
  // which registry alias (the customer's variant of a live experiment) and version answered
  const answeredBy = `${answer.variant || "champion"} v${answer.model_version}`;
  $("answered-by").textContent = `answered by ${answeredBy}`;
  $("answered-by").dataset.variant = answer.variant || "champion";
  $("model-version").textContent = `model ${answeredBy}`;
  $("recs").dataset.requestId = answer.request_id;
  $("recs").replaceChildren(...items.map((a) => card(a, { reason: true, buy: true, requestId: answer.request_id })));
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
      api("POST", "/recommendations", { customer_id: customerId, k: RECS_ASKED }),
      api("GET", `${path}/buy-again?k=12`),
    ]);
    if (how === "push" && currentCustomer !== customerId) window.history.pushState({ customer: customerId }, "", customerUrl(customerId));
    currentCustomer = customerId;
    $("customer-input").value = customerId;
    renderProfile(customer, buyAgain);
    renderRecs(answer, new Set(buyAgain.items.map((a) => a.article_id)));
    $("similar-section").classList.add("hidden");
  } catch (error) {
    showError(error);
  }
}

function newEventId() {
  return window.crypto && crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// A refused or lost purchase is sent once more with the same event id: the service stores it at most once.
async function sendPurchase(body) {
  try {
    return await api("POST", "/events/purchases", body);
  } catch (error) {
    if (error.status && error.status !== 503) throw error;  // only a busy service or a lost answer is worth a retry
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return api("POST", "/events/purchases", body);
  }
}

async function purchase(article, requestId, eventId) {
  if (!currentCustomer) return;
  try {
    const body = { customer_id: currentCustomer, article_id: article.article_id, event_id: eventId };
    if (requestId) body.request_id = requestId;
    await sendPurchase(body);
    await loadCustomer(currentCustomer, "stay");
    confirmPurchase(`Bought ${article.name || article.article_id}: it is now in your recent purchases.`);
  } catch (error) {
    showError(error);
  }
}

async function showSimilar(article) {
  showError(null);
  try {
    const shownTo = currentCustomer ? `&customer_id=${encodeURIComponent(currentCustomer)}` : "";
    const answer = await api("GET", `/articles/${article.article_id}/similar?k=8${shownTo}`);
    $("similar-name").textContent = article.name || article.article_id;
    $("similar-method").textContent = answer.method === "same_product_type" ? "(same product type)" : "(by style vectors)";
    $("similar").dataset.requestId = answer.request_id;
    $("similar").replaceChildren(...answer.items.map((a) => card(a, { buy: Boolean(currentCustomer), requestId: answer.request_id })));
    $("similar-section").classList.remove("hidden");
    $("similar-section").scrollIntoView({ behavior: "smooth" });
  } catch (error) {
    showError(error);
  }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("customer-input").value.trim();
  const problem = customerIdProblem(value);
  if (problem) showError(new Error(problem));
  else loadCustomer(value, "push");
});
for (const button of document.querySelectorAll("button.sample")) {
  button.addEventListener("click", () => {
    $("customer-input").value = button.dataset.customer;
    loadCustomer(button.dataset.customer, "push");
  });
}
// Back and Forward show the customer of that history entry, and the empty page for the entry without one.
function clearCustomer() {
  currentCustomer = null;
  $("customer-input").value = "";
  showError(null);
  for (const id of ["customer", "again-section", "recs-section", "similar-section", "toast"]) $(id).classList.add("hidden");
}
window.addEventListener("popstate", (event) => {
  const customerId = (event.state && event.state.customer) || new URLSearchParams(window.location.search).get("customer");
  if (customerId) loadCustomer(customerId, "stay");
  else clearCustomer();
});
const linked = new URLSearchParams(window.location.search).get("customer");
if (linked) loadCustomer(linked, "stay");
