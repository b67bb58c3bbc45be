"""The API docs at /docs from Swagger UI files installed with the package (swagger-ui-bundle), never a CDN."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs-assets"


def add_offline_docs(app: FastAPI) -> list[str]:
    """Serve Swagger UI at /docs with its JavaScript and CSS from ASSETS; the app must have docs_url=None. Returns the
    two pages' HTML, whose inline scripts the Content-Security-Policy admits by hash (serving/edges.py)."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API docs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url="/favicon.ico", oauth2_redirect_url="/docs/oauth2-redirect")
    redirect = get_swagger_ui_oauth2_redirect_html()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page.body)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return HTMLResponse(redirect.body)

    return [page.body.decode(), redirect.body.decode()]
