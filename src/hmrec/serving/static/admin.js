// The admin page: asks /admin/experiment with the token typed in (kept for this tab only). Text set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);

function cell(text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  return td;
}

function render(status) {
  const experiment = status.experiment;
  $("experiment-name").textContent = experiment ? `${experiment.name} (since ${experiment.started || "?"})`
    : "(none: the champion answers every customer)";
  const rows = status.variants.map((v) => {
    const tr = document.createElement("tr");
    tr.dataset.variant = v.variant;
    const byVersion = Object.entries(v.answers_by_version).map(([version, n]) => `v${version}: ${n}`).join(", ");
    tr.append(cell(v.variant), cell(`${(v.share * 100).toFixed(1)}%`), cell(`v${v.model_version}`), cell(v.answers),
      cell(byVersion || "-"));
    return tr;
  });
  $("variants").querySelector("tbody").replaceChildren(...rows);
  $("variants").classList.remove("hidden");
  $("report").textContent = status.report ? JSON.stringify(status.report, null, 2)
    : "Answer counts only: the event store cannot be read now, so the online report (impressions, attributed purchases) is missing.";
  $("report").classList.remove("hidden");
}

async function show() {
  const token = $("token").value.trim();
  sessionStorage.setItem("hmrec-admin-token", token);
  const response = await fetch("/admin/experiment", { headers: { Authorization: `Bearer ${token}` } });
  const data = await response.json().catch(() => ({}));
  $("error").textContent = response.ok ? "" : (data.detail || response.statusText);
  $("error").classList.toggle("hidden", response.ok);
  if (response.ok) render(data);
}

$("token-form").addEventListener("submit", (event) => { event.preventDefault(); show(); });
const kept = sessionStorage.getItem("hmrec-admin-token");
if (kept) { $("token").value = kept; show(); }
