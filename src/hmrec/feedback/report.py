"""The experiment report's files: Markdown and JSON in a folder of the workdir, and the same figures in MLflow."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)
MLFLOW_EXPERIMENT = "hmrec-online"  # apart from the pipeline's runs (`hmrec`)
RATIOS = [("followed_share", "followed share", "{:.2%}"), ("purchases_per_1000", "purchases / 1,000", "{:.1f}"),
          ("revenue_per_1000", "revenue / 1,000", "{:.4f}")]


def to_markdown(report: dict) -> str:
    """The report as a Markdown page: one row per variant, the control first, then what the verdicts mean."""
    since = f" since {report['since']}" if report["since"] else ""
    lines = [f"# Online experiment report{since}", "",
             f"Attribution window: {report['window_days']} service days. Purchases{since}: {report['purchases']}, "
             f"of which attributed to an impression: {report['attributed_purchases']}. Intervals: "
             f"{1 - report['alpha']:.0%}, bootstrap over customers ({report['resamples']} resamples).", ""]
    if not report["variants"]:
        return "\n".join([*lines, "No impressions recorded yet: the service records one per answer.", ""])
    lines += ["| variant | customers | impressions | attributed purchases | "
              + " | ".join(title for _, title, _ in RATIOS) + " | vs control | verdict |",
              "|---|---:|---:|---:|" + "---:|" * len(RATIOS) + "---:|---|"]
    order = sorted(report["variants"], key=lambda v: (v != report["control"], v))
    for name in order:
        v = report["variants"][name]
        cells = [_ratio(v[key], fmt) for key, _, fmt in RATIOS]
        lines.append(f"| {name} | {v['customers']} | {v['impressions']} | {v['attributed_purchases']} | "
                     + " | ".join(cells) + f" | {_difference(v)} | {_verdict(v)} |")
    lines += ["", f"Followed share: the share of impressions after which the customer bought an article shown within "
              f"the window. The verdict compares it with `{report['control']}`: better or worse when the "
              f"{1 - report['alpha']:.0%} interval of the difference excludes 0; otherwise not yet significant, with "
              f"the impressions the variant would need (the control growing alike) to find the difference now seen "
              f"with {report['power']:.0%} power.", ""]
    return "\n".join(lines)


def write_report(report: dict, folder: Path) -> Path:
    """report.md and report.json in `folder/<UTC time>/`, copied to `folder/latest/`; the dated folder."""
    dated = folder / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dated.mkdir(parents=True)
    (dated / "report.md").write_text(to_markdown(report))
    (dated / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    latest = folder / "latest"
    if latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(dated, latest)
    return dated


def log_report(workdir: Path, report: dict, folder: Path) -> str:
    """One MLflow run in the workdir's tracking store (experiment `hmrec-online`): each variant's figures as
    metrics (`<variant>/impressions`, `<variant>/followed_share`, its `_low`/`_high`...), the files as artifacts."""
    from hmrec.registry.tracking import Tracker

    params = {"window_days": report["window_days"], "since": report["since"], "control": report["control"],
              "alpha": report["alpha"], "resamples": report["resamples"]}
    with Tracker.start(workdir, "experiment-report", params, experiment=MLFLOW_EXPERIMENT) as tracker:
        tracker.log_metrics({name: _metrics(v) for name, v in report["variants"].items()})
        tracker.log_metrics({"purchases": report["purchases"], "attributed_purchases": report["attributed_purchases"]})
        tracker.set_tags({f"verdict.{name}": v["verdict"] for name, v in report["variants"].items()})
        tracker.log_artifacts(folder, "experiment_report")
        return tracker.run_id


def _metrics(variant: dict) -> dict:
    out = {key: variant[key] for key in ("customers", "impressions", "attributed_purchases", "revenue")}
    for key, _, _ in [*RATIOS, ("difference", "", "")]:
        if key in variant:
            out[key] = variant[key]["value"]
            out[f"{key}_low"], out[f"{key}_high"] = variant[key]["ci"]
    return out


def _ratio(figure: dict, fmt: str) -> str:
    if figure["value"] is None:
        return "-"
    low, high = figure["ci"]
    return f"{fmt.format(figure['value'])} [{fmt.format(low)}, {fmt.format(high)}]"


def _difference(variant: dict) -> str:
    return _ratio(variant["difference"], "{:+.2%}") if "difference" in variant else "-"


def _verdict(variant: dict) -> str:
    needed = variant.get("impressions_needed")
    return variant["verdict"] + (f" (about {needed:,} impressions needed)" if needed else "")
