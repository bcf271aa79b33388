"""``unigen serve``: a task model behind an HTTP API (FastAPI, served by uvicorn) with a web page.

Endpoints::

    GET  /          the web page (static/index.html: one text per line classified as a batch into a table,
                    a file upload with a CSV download, label and probability bars for a single text)
    POST /predict   {"text": "..."} or {"texts": ["...", ...]}
                    -> {"predictions": [{"text", "label", "probabilities": {label: p}}], "model": backend}
    GET  /health    {"status": "ok", "backend", "labels"}
    GET  /model     what the model is: labels, backend, architecture, encoder, token limit, quantization,
                    parameters, precision (fp32 | bf16: bfloat16 autocast), the request limits, and the model
                    card as JSON (front matter + sections)
    GET  /docs      OpenAPI documentation: Swagger UI (and /redoc: ReDoc; /openapi.json: the schema), whose
                    JS and CSS are served from /docs-assets/ out of the ``fastapi-offline`` package (Swagger
                    UI 5, ReDoc 2), so the docs work with no network; without that package, FastAPI's
                    default pages (which load them from a CDN)

A prediction has the format the command line and the Python API share (:mod:`unigen.predictions`); an
empty text (or only spaces) gets ``label`` and ``probabilities`` ``null``, as in ``unigen predict``.

Limits: at most ``max_texts`` texts per request and ``max_chars`` characters per text; more is answered
with 413 and a message that names the limit. The body itself is limited while it is read
(:class:`BodyLimit`, an ASGI middleware: chunked or not, a body over :func:`body_limit` bytes is answered
413 as soon as that many bytes have come, so a huge upload never sits in memory). A body that is not the
schema (no text, both, wrong types, an empty list) is answered with 422, and so is a text that is not
Unicode (an unpaired surrogate from a JSON escape such as ``"\\ud800"``) or holds a NUL character, with a
one-line message. The model is a PyTorch task-model folder (or train stage folder) or a folder exported by
``unigen export --format onnx``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, model_validator

from unigen import __version__
from unigen.inference import LoadedModel, load_model

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_TEXTS", "BodyLimit", "LoadedModel", "body_limit", "create_app",
           "docs_assets_dir", "load_model"]

DEFAULT_MAX_TEXTS = 64
DEFAULT_MAX_CHARS = 5_000


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
    """One text's label and class probabilities; both ``null`` for an empty text (or only spaces)."""

    text: str
    label: str | None
    probabilities: dict[str, float] | None


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


def body_limit(max_texts: int, max_chars: int) -> int:
    """The largest body a valid request can need: every text at its limit, each character JSON-escaped
    (``\\uXXXX``, 6 bytes), with room for the keys and spaces."""
    return max_texts * (6 * max_chars + 64) + 4096


class BodyTooLarge(Exception):
    """Raised inside the application when the body read so far is over the limit."""


class BodyLimit:
    """ASGI middleware: refuses a request body over ``max_body`` bytes with 413 while it is read.

    A ``Content-Length`` over the limit is refused before anything is read; otherwise (chunked bodies
    included) the bytes are counted as the application receives them, and the first message that takes the
    count over the limit stops the request: the application's own answer, if any, is dropped and 413 is
    sent. At most ``max_body`` bytes plus one message of the body are ever held.
    """

    def __init__(self, app: Any, max_body: int, limits: str) -> None:
        self.app = app
        self.max_body = max_body
        self.limits = limits

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps({"detail": f"request body {size} is too large (at most {self.max_body} bytes: "
                                     f"{self.limits})"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._refuse(send, f"of {int(length)} bytes")
            return
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    state["over"] = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            if state["over"] and not state["started"]:
                return  # the application's answer to a body it could not read whole; ours follows
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._refuse(send, f"of more than {self.max_body} bytes")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be classified (an unpaired surrogate, a NUL character), or ``None``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds an unpaired surrogate (U+{ord(text[exc.start]):04X} at character {exc.start + 1}), "
                "which is not Unicode text")
    if "\x00" in text:
        return f"holds a NUL character (U+0000 at character {text.index(chr(0)) + 1})"
    return None


def _safe(value: Any) -> Any:
    """``value`` with every string made writable as UTF-8 (for error messages that echo the input)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    return value


def _check_texts(texts: list[str], max_texts: int, max_chars: int) -> None:
    """413 for too many texts or a text too long, 422 for a text that is not Unicode or holds a NUL."""
    if len(texts) > max_texts:
        raise HTTPException(413, f"too many texts: {len(texts)} in one request, at most {max_texts}")
    for i, text in enumerate(texts):
        problem = text_problem(text)
        if problem:
            raise HTTPException(422, f"text {i} {problem}")
    long = next((i for i, t in enumerate(texts) if len(t) > max_chars), None)
    if long is not None:
        raise HTTPException(413, f"text {long} has {len(texts[long])} characters, at most {max_chars} "
                                 "per text")


def create_app(model: LoadedModel | str | Path, *, max_texts: int = DEFAULT_MAX_TEXTS,
               max_chars: int = DEFAULT_MAX_CHARS) -> FastAPI:
    """The FastAPI application serving ``model`` (a :class:`LoadedModel` or a folder to load); the limits
    must be at least 1."""
    from unigen.errors import UniGenError
    from unigen.tam.model_card import parse_card

    for name, value in (("max_texts", max_texts), ("max_chars", max_chars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UniGenError(f"{name} must be a whole number of at least 1, got {value!r}")
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    assets = docs_assets_dir()
    offline = {} if assets is None else {"docs_url": None, "redoc_url": None}
    app = FastAPI(title="UniGen sentiment classifier", version=__version__, **offline,
                  description="A sentiment classifier trained by UniGen on synthetic data only. "
                  f"Labels: {', '.join(loaded.labels)}. At most {max_texts} texts per request and "
                  f"{max_chars} characters per text. An empty text gets no label (null).")
    app.add_middleware(BodyLimit, max_body=body_limit(max_texts, max_chars),
                       limits=f"{max_texts} texts of at most {max_chars} characters")
    card = parse_card(loaded.card) if loaded.card else None
    if assets is not None:
        _add_offline_docs(app, assets)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, without echoing input that cannot be written as UTF-8 (which made a 500)."""
        errors = [{k: _safe(v) for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

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
        413: {"description": "too many texts, a text too long, or a body too large"},
        422: {"description": "the body is not {\"text\": str} or {\"texts\": [str, ...]}, or a text is not "
                             "Unicode (an unpaired surrogate) or holds a NUL character"}})
    def predict(request: PredictRequest) -> PredictResponse:
        """Label and class probabilities of one text or of a batch, in the order given; an empty text gets
        label and probabilities null."""
        texts = [request.text] if request.text is not None else list(request.texts or [])
        _check_texts(texts, max_texts, max_chars)
        return PredictResponse(model=loaded.backend,
                               predictions=[Prediction(**p) for p in loaded.classify(texts)])

    return app
