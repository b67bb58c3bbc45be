"""GET /admin/experiment: the live experiment, each variant's version and answers so far (admin token); GET /admin:
the page that shows them once given the token."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hmrec.feedback.online import online_report
from hmrec.serving.deps import AdminDep, HolderDep, ImpressionsDep, MetricsDep
from hmrec.serving.events import EventStoreUnavailable
from hmrec.serving.schemas import ExperimentStatus, error_responses

router = APIRouter(tags=["admin"])
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")


def live_report(impressions: ImpressionsDep) -> dict | None:
    """The experiment's online figures, as `hmrec experiment report` computes them (impressions, attributed purchases,
    intervals, verdict), from the store's impressions and purchases; None while the event store cannot be read (the
    page then shows the answer counts only). Reads every impression kept: an admin's page, not a hot path."""
    try:
        shown, sales = impressions.store.impressions(), impressions.store.sales()
    except EventStoreUnavailable:
        return None
    return online_report(shown, sales, resamples=200)


@router.get("/admin/experiment", response_model=ExperimentStatus, responses=error_responses(401, 403, 503),
            summary="The live experiment: its variants, the version each serves here, and answers so far")
def experiment(_: AdminDep, holder: HolderDep, metrics: MetricsDep, impressions: ImpressionsDep) -> dict:
    _ = holder.model  # 503 with the reason while no model is loaded
    served = holder.served
    counts = metrics.variant_counts()
    shares = dict(served.experiment.variants) if served.experiment else {"champion": 1.0}
    variants = [{"variant": alias, "share": shares[alias], "model_version": model.version,
                 "answers": sum(n for (variant, _), n in counts.items() if variant == alias),
                 "answers_by_version": {version: n for (variant, version), n in counts.items() if variant == alias}}
                for alias, model in served.models.items()]
    return {"experiment": served.experiment.as_json() if served.experiment else None, "variants": variants,
            "report": live_report(impressions)}


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
def page(request: Request) -> HTMLResponse:
    """The page holds no figures: its script asks /admin/experiment with the token the operator types in."""
    return templates.TemplateResponse(request, "admin.html", {})
