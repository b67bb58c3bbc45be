"""GET /admin/experiment: the live experiment, each variant's version and answers so far (admin token); GET /admin:
the page that shows them once given the token."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hmrec.serving.deps import AdminDep, HolderDep, MetricsDep, SettingsDep
from hmrec.serving.model_holder import Served
from hmrec.serving.schemas import ExperimentStatus, error_responses
from hmrec.serving.settings import Settings

router = APIRouter(tags=["admin"])
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")


def online_report(settings: Settings, served: Served) -> dict | None:
    """The hook for the experiment's online figures (impressions, attributed purchases, their intervals: `hmrec
    experiment report`); None until that report is wired in here, when the page shows the answer counts only."""
    return None


@router.get("/admin/experiment", response_model=ExperimentStatus, responses=error_responses(401, 403, 503),
            summary="The live experiment: its variants, the version each serves here, and answers so far")
def experiment(_: AdminDep, holder: HolderDep, metrics: MetricsDep, settings: SettingsDep) -> dict:
    _ = holder.model  # 503 with the reason while no model is loaded
    served = holder.served
    counts = metrics.variant_counts()
    shares = dict(served.experiment.variants) if served.experiment else {"champion": 1.0}
    variants = [{"variant": alias, "share": shares[alias], "model_version": model.version,
                 "answers": sum(n for (variant, _), n in counts.items() if variant == alias),
                 "answers_by_version": {version: n for (variant, version), n in counts.items() if variant == alias}}
                for alias, model in served.models.items()]
    return {"experiment": served.experiment.as_json() if served.experiment else None, "variants": variants,
            "report": online_report(settings, served)}


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
def page(request: Request) -> HTMLResponse:
    """The page holds no figures: its script asks /admin/experiment with the token the operator types in."""
    return templates.TemplateResponse(request, "admin.html", {})
