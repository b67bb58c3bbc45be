"""GET /: the demo shop front (Jinja2 page + plain JavaScript calling the API)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from hmrec.serving.deps import HolderDep
from hmrec.serving.edges import without_paths
from hmrec.serving.model_holder import NotReadyError

router = APIRouter(tags=["demo"])
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")  # autoescapes .html
FAVICON = Path(__file__).parent.parent / "static" / "favicon.svg"
SAMPLE_LABELS = {"frequent": "Frequent buyer", "occasional": "Occasional buyer", "new": "New customer"}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request, holder: HolderDep) -> HTMLResponse:
    try:
        model = holder.model
        samples = [(SAMPLE_LABELS.get(kind, kind), kind, cid) for kind, cid in model.samples.items()]
        context = {"samples": samples, "version": model.version, "not_ready": None}
    except NotReadyError as error:
        context = {"samples": [], "version": None, "not_ready": without_paths(str(error), holder.settings.workdir)}
    return templates.TemplateResponse(request, "index.html", context)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """The shop's icon (SVG, which browsers accept at this path too), so no page logs a 404 for it."""
    return FileResponse(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
