"""``unigen serve``: a task model behind an HTTP API (FastAPI, served by uvicorn) with a web page.

Endpoints::

    GET  /          the web page (static/index.html: a text box, examples, label and probability bars)
    POST /predict   {"text": "..."} or {"texts": ["...", ...]}
                    -> {"predictions": [{"text", "label", "probabilities": {label: p}}], "model": backend}
    GET  /health    {"status": "ok", "backend", "labels"}
    GET  /model     what the model is: labels, backend, architecture, encoder, token limit, quantization,
                    parameters, the request limits, and the model card as JSON (front matter + sections)
    GET  /docs      OpenAPI documentation: Swagger UI (and /redoc: ReDoc; /openapi.json: the schema), whose
                    JS and CSS are served from /docs-assets/ out of the ``fastapi-offline`` package (Swagger
                    UI 5, ReDoc 2), so the docs work with no network; without that package, FastAPI's
                    default pages (which load them from a CDN)

Limits: at most ``max_texts`` texts per request and ``max_chars`` characters per text; more is answered
with 413 and a message that names the limit. A body that is not the schema (no text, both, wrong types,
an empty list) is answered with 422. The model is a PyTorch task-model folder (or train stage folder) or
a folder exported by ``unigen export --format onnx``.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, model_validator

from unigen import __version__

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_TEXTS", "LoadedModel", "create_app", "docs_assets_dir",
           "load_model"]

DEFAULT_MAX_TEXTS = 64
DEFAULT_MAX_CHARS = 5_000


class LoadedModel:
    """A task model of either backend with what the server tells about it.

    Args:
        model: anything with ``labels`` and ``predict_proba(texts) -> (N, C)``.
        backend: ``"pytorch"`` or ``"onnx"``.
        info: architecture, encoder, max_length, quantization, parameters.
        card: the ``README.md`` model card text, if any.
    """

    def __init__(self, model: Any, backend: str, info: dict[str, Any], card: str | None) -> None:
        self.model = model
        self.backend = backend
        self.info = info
        self.card = card
        self.labels = tuple(model.labels)
        self._lock = threading.Lock() if backend == "pytorch" else None  # predict_proba toggles eval mode

    def predict_proba(self, texts: list[str]) -> Any:
        if self._lock is None:
            return self.model.predict_proba(texts)
        with self._lock:
            return self.model.predict_proba(texts)


def load_model(path: str | Path, *, device: str = "cpu") -> LoadedModel:
    """Load a PyTorch task-model folder (or train stage folder) or an exported ONNX folder."""
    import json

    from unigen.export.onnx_model import ONNX_CONFIG, OnnxTaskModel, is_onnx_folder

    path = Path(path)
    if is_onnx_folder(path):
        model: Any = OnnxTaskModel.from_pretrained(path)
        record = json.loads((path / ONNX_CONFIG).read_text(encoding="utf-8"))
        backend, folder = "onnx", path
    else:
        from unigen.tam.model import CONFIG_NAME, TaskModel  # torch

        model = TaskModel.from_pretrained(path, device=device)
        folder = path if (path / CONFIG_NAME).is_file() else path / "model"
        record = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        record.setdefault("parameters", sum(p.numel() for p in model.parameters()))
        backend = "pytorch"
    info = {k: record.get(k) for k in ("architecture", "encoder", "max_length", "pooling", "parameters")}
    info["quantization"] = record.get("quantization")
    card_file = folder / "README.md"
    card = card_file.read_text(encoding="utf-8") if card_file.is_file() else None
    return LoadedModel(model, backend, info, card)


class PredictRequest(BaseModel):
    """One text (``text``) or a batch (``texts``), not both."""

    text: str | None = Field(default=None, description="one text to classify")
    texts: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description="several texts to classify")

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give either "text" (one string) or "texts" (a non-empty list of strings)')
        return self

    model_config = {"json_schema_extra": {"examples": [{"text": "What a lovely little film."},
                                                       {"texts": ["Great battery life.", "Never again."]}]}}


class Prediction(BaseModel):
    text: str
    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: str


def _page() -> str:
    return resources.files("unigen.serve").joinpath("static/index.html").read_text(encoding="utf-8")


#: where the documentation pages' scripts and styles are served
DOCS_ASSETS = "/docs-assets"
DOCS_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def docs_assets_dir() -> Path | None:
    """The folder of Swagger UI's and ReDoc's files shipped by the ``fastapi-offline`` package (Swagger UI
    is Apache-2.0, ReDoc MIT, the package MIT), or ``None`` when it is not installed."""
    try:
        folder = Path(str(resources.files("fastapi_offline").joinpath("static")))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in DOCS_FILES) else None


def _add_offline_docs(app: FastAPI, folder: Path) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their assets served from ``folder``."""
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(folder)), name="docs-assets")
    openapi_url, redirect_url = app.openapi_url or "/openapi.json", app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=(root + redirect_url) if redirect_url else None,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")

    if redirect_url:
        @app.get(redirect_url, include_in_schema=False)
        def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False)


def create_app(model: LoadedModel | str | Path, *, max_texts: int = DEFAULT_MAX_TEXTS,
               max_chars: int = DEFAULT_MAX_CHARS) -> FastAPI:
    """The FastAPI application serving ``model`` (a :class:`LoadedModel` or a folder to load)."""
    from unigen.tam.model_card import parse_card

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    assets = docs_assets_dir()
    offline = {} if assets is None else {"docs_url": None, "redoc_url": None}
    app = FastAPI(title="UniGen sentiment classifier", version=__version__, **offline,
                  description="A sentiment classifier trained by UniGen on synthetic data only. "
                  f"Labels: {', '.join(loaded.labels)}. At most {max_texts} texts per request and "
                  f"{max_chars} characters per text.")
    # a body larger than this cannot be a valid request: refused before it is parsed
    max_body = 4 * max_texts * (max_chars + 16) + 1024
    card = parse_card(loaded.card) if loaded.card else None
    if assets is not None:
        _add_offline_docs(app, assets)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return JSONResponse(status_code=413, content={
                "detail": f"request body of {int(length)} bytes is too large (at most {max_body}: "
                f"{max_texts} texts of at most {max_chars} characters)"})
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _page()

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the model is loaded and answers."""
        return {"status": "ok", "backend": loaded.backend, "labels": list(loaded.labels)}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        """What the model is, the request limits and its model card (front matter and sections)."""
        return {"labels": list(loaded.labels), "backend": loaded.backend, **loaded.info,
                "limits": {"max_texts": max_texts, "max_chars": max_chars}, "card": card}

    @app.post("/predict", response_model=PredictResponse, responses={
        413: {"description": "too many texts, or a text too long"},
        422: {"description": "the body is not {\"text\": str} or {\"texts\": [str, ...]}"}})
    def predict(request: PredictRequest) -> PredictResponse:
        """Label and class probabilities of one text or of a batch, in the order given."""
        texts = [request.text] if request.text is not None else list(request.texts or [])
        if len(texts) > max_texts:
            raise HTTPException(413, f"too many texts: {len(texts)} in one request, at most {max_texts}")
        long = next((i for i, t in enumerate(texts) if len(t) > max_chars), None)
        if long is not None:
            raise HTTPException(413, f"text {long} has {len(texts[long])} characters, at most {max_chars} "
                                     "per text")
        probs = loaded.predict_proba(texts)
        labels = loaded.labels
        return PredictResponse(model=loaded.backend, predictions=[
            Prediction(text=t, label=labels[int(p.argmax())],
                       probabilities={lab: round(float(x), 6) for lab, x in zip(labels, p)})
            for t, p in zip(texts, probs)])

    return app
