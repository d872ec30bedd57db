"""The HTTP API: an OpenAI-compatible chat endpoint that answers from the documents, and documents.

POST /v1/chat/completions   OpenAI chat completions (``stream`` included); the last user message is the
                            question, earlier user/assistant pairs the conversation. The reply carries
                            ``sources`` (numbered as the [n] markers), ``found`` and ``timings`` beside
                            the usual fields; streamed, they come in the last chunk before [DONE].
GET  /v1/models             the one model this API offers ("sourcier"), for OpenAI clients
GET  /v1/documents          the documents in the store
POST /v1/documents          upload files (multipart field ``files``), ingested at once
DELETE /v1/documents/{source}?root=...   remove one document
POST /v1/documents/{source}/summary   the whole document summarised, each point with its pages (body: language,
                            refresh, root; ``stream``: NDJSON progress lines, then the summary); kept per version
POST /v1/compare            two documents (``first``, ``second``) lined up topic by topic, each side cited
PATCH /v1/documents/{source}/card?root=...   correct its card (organisation, year, quarter, date, doc_type,
                            title; null forgets a correction): what questions naming documents are routed by
GET  /health                liveness and the model's state (no data, no key needed): 200 while it answers,
                            busy or not; 503 when a generation has held the model past llm.timeout_s
                            without producing a token (wedged: restart the process), or when the model's
                            worker process died and could not be started again. ``model.process`` tells
                            the worker's pid, restarts and last crash.

A crash of the model's worker process fails only the request it was answering (503, code
``model_restarting``, or an error event in a stream); the next request is answered by a new worker.

GET  /v1/me                 who the key belongs to, and the collections they read

With accounts (``sourcier users``), every other route needs a person's own key (``Authorization: Bearer
<key>``, made by ``sourcier users key NAME``) and reads only what that person may read: documents outside
their collections are "not found", like documents that do not exist. Without accounts, ``server.api_key``
(when set) is the one key. No interactive
docs page (it would load its scripts from a CDN, and nothing here reaches the network) and no route schema.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.runs import AnswerRun, ClientGone
from rag.accounts import AccessError, Accounts
from rag.answering.answer import Answer
from rag.answering.answer_json import answer_json
from rag.answering.conversations import ConversationNotFound
from rag.answering.packing import Passage, Turn
from rag.answering.summary import Progress, with_progress
from rag.audit import AuditLog
from rag.errors import IngestLockedError, LLMServerError, ModelCrashError, ModelFileError, SourcierError, StoreError
from rag.llm.turns import Cancellation
from rag.search.cards import CardError, DocumentCard
from service import NotReadable, Reader, Service, SessionChoices
from service.reader import describe

MODEL_NAME = "sourcier"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


class ScopeFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[str] = Field(
        min_length=1, description="documents as listed by GET /v1/documents, or folders of them ('reports/')"
    )


class ChatRequest(BaseModel):
    """OpenAI's chat request; fields we do not use are accepted and ignored, like OpenAI's own servers do
    for most. A client's system message is ignored: the service's own instructions (cite, or say the
    documents do not hold the answer) are what make the answer trustworthy."""

    model_config = ConfigDict(extra="allow")
    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    k: int | None = Field(None, ge=1, le=100, description="passages given to the model (sourcier extension)")
    filter: ScopeFilter | None = Field(None, description="ask only chosen documents (sourcier extension)")
    conversation_id: str | None = Field(
        None,
        description="continue this saved conversation: its earlier questions and answers are the history "
        "(sourcier extension; every answer is saved, and its conversation_id returned, unless store is false)",
    )
    store: bool = Field(
        True,
        description="save the answer in a conversation (OpenAI's field); false: nothing of this exchange is "
        "written on the server, and a given conversation_id is read as history only",
    )


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


MAX_MESSAGE = 600  # an error names what it refused, cut: a 60,000-character id is not sent back whole


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {"error": {"message": message, "type": kind, "code": code}}


def api_error(exc: SourcierError) -> ApiError:
    """Our error as an HTTP status: the client's fault (400), a busy store (409), a server behind us (502/503)."""
    if isinstance(exc, IngestLockedError):
        return ApiError(409, str(exc), "conflict", "ingest_running")
    if isinstance(exc, ConversationNotFound):
        return ApiError(404, str(exc), "not_found", "conversation_not_found")
    if isinstance(exc, NotReadable):  # absent or not the asker's to read: one answer for both
        return ApiError(404, str(exc), "not_found", "document_not_found")
    if isinstance(exc, AccessError):
        return ApiError(403, str(exc), "permission_error", "forbidden")
    if isinstance(exc, LLMServerError):
        return ApiError(502, str(exc), "upstream_error", "llm_server")
    if isinstance(exc, ModelCrashError):
        return ApiError(503, str(exc), "server_error", "model_restarting")
    if isinstance(exc, StoreError | ModelFileError):
        return ApiError(503, str(exc), "server_error", "unavailable")
    return ApiError(400, str(exc), "invalid_request_error", None)


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The question (the last user message) and the earlier question/answer pairs."""
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user":
        raise ApiError(400, "the last message must be the user's question", "invalid_request_error")
    history: list[Turn] = []
    pending: str | None = None
    for m in talk[:-1]:
        if m.role == "user":
            pending = m.text()
        elif pending is not None:
            history.append(Turn(pending, m.text()))
            pending = None
    return talk[-1].text(), history


class CardChange(BaseModel):
    """Corrections of a document's card (``rag.search.cards``); null forgets a correction."""

    title: str | None = None
    organisation: str | None = None
    year: int | None = Field(None, ge=1900, le=2100)
    quarter: int | None = Field(None, ge=1, le=4)
    date: str | None = Field(None, description="YYYY-MM-DD")
    doc_type: str | None = Field(None, description="annual report, quarterly report, contract, policy...")


class SummaryRequest(BaseModel):
    """A whole document summarised (``rag.answering.summary``)."""

    model_config = ConfigDict(extra="forbid")
    language: Literal["en", "fr"] | None = Field(None, description="default: the document's language")
    refresh: bool = Field(False, description="summarise again even when a summary of this version is kept")
    stream: bool = Field(False, description="NDJSON: a {'progress': ...} line per step, then {'summary': ...}")
    root: str | None = Field(None, description="the document's folder, when its name is in several")


class CompareRequest(BaseModel):
    """Two documents lined up topic by topic (``rag.answering.summary``)."""

    model_config = ConfigDict(extra="forbid")
    first: str
    second: str
    language: Literal["en", "fr"] | None = None
    stream: bool = False


def card_dict(card: DocumentCard | None) -> dict[str, Any] | None:
    """A document's card as the API gives it."""
    if card is None:
        return None
    data = card.as_dict()
    return {k: data[k] for k in ("title", "organisation", "period", "year", "quarter", "date", "doc_type",
                                 "language", "pages", "edited")}  # fmt: skip


def page_url(p: Passage) -> str | None:
    """For a PDF or image page: the URL of that page's image with the passage highlighted."""
    return f"/v1/documents/{quote(p.source)}/pages/{p.page}.png?highlight={quote(p.chunk_id)}" if p.page else None


def answer_extras(answer: Answer) -> dict[str, Any]:
    """The answer's one JSON shape (rag.answering.answer_json) beside the OpenAI fields, its pages' image URLs in."""
    return answer_json(answer, page_url)


def usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.timings.prompt_tokens, answer.timings.answer_pieces
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(service: Service) -> FastAPI:
    """The API over one service (tests pass one built with fakes): the key check, the error shapes, and the
    routes of each part (questions, documents, conversations)."""
    app = FastAPI(  # no docs pages and no schema route: only /health answers without the key
        title="sourcier", docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None, openapi_url=None
    )
    settings = service.settings
    app.add_middleware(KeyFirst, key=lambda: settings.server.api_key, accounts=service.accounts, audit=service.audit)
    handle_errors(app)
    for routes in (question_routes, document_routes, conversation_routes):
        app.include_router(routes(service))
    return app


def person_of(service: Service, request: Request) -> Reader:
    """The service as the request's person sees it (KeyFirst found them from their key)."""
    return service.reader(request.scope.get("state", {}).get("person"))


def handle_errors(app: FastAPI) -> None:
    """Every error, ours, Starlette's and a request that does not validate, in OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:  # a 401 is KeyFirst's, before any route
        return JSONResponse(error_body(exc.message, exc.kind, exc.code), status_code=exc.status)

    @app.exception_handler(SourcierError)
    async def _sourcier_error(request: Request, exc: SourcierError) -> JSONResponse:
        return await _api_error(request, api_error(exc))

    @app.exception_handler(StarletteHTTPException)  # Starlette's own too: an unknown path (404), a wrong method
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body(f"invalid request: {where}", "invalid_request_error"), status_code=400)


def question_routes(service: Service) -> APIRouter:
    """Health, who the key is, the model list and the chat completion that answers from the documents."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        # async: answered by the event loop itself, even when every worker thread is stuck
        report = service.health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @router.get("/v1/me")
    def me(request: Request) -> dict[str, Any]:
        return describe(person_of(service, request))

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "local"}]}

    @router.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> Any:
        question, history = conversation(body.messages)
        person = person_of(service, request)
        defaults = service.defaults()
        choices = SessionChoices(
            k=body.k or defaults.k,
            temperature=body.temperature if body.temperature is not None else defaults.temperature,
            max_tokens=body.max_completion_tokens or body.max_tokens or defaults.max_tokens,
            system_prompt=defaults.system_prompt,
            model_path=None,
        )
        if body.conversation_id is not None:  # the saved conversation is the history (404 when unknown)
            saved = person.conversations.get(body.conversation_id)
            history = [Turn(a.question, a.text) for a in saved.answers]
        scope_names = body.filter.sources if body.filter else []

        def keep(answer: Answer) -> dict[str, Any]:
            """Save the finished answer in its conversation (its id goes back to the client); the audit trail
            keeps the question and the sources shown either way."""
            kept = body.conversation_id
            if not answer.cancelled and body.store:
                kept = person.save_answer(body.conversation_id, answer, scope_names)
            person.answered(answer, scope_names, kept)
            return {"conversation_id": kept}

        cancel = Cancellation()
        scope = person.scope(scope_names)  # a name matching nothing (readable): 400
        # Retrieval and packing (and the model's first load) block: a worker thread. Bad questions fail
        # here, before any 200.
        stream = await run_in_threadpool(
            lambda: person.answerer(choices).stream(question, history, cancel, scope=scope)
        )
        run = AnswerRun(stream, cancel).start()
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return AnswerResponse(
                run,
                sse_chunks(run, request.is_disconnected, ident, created, keep),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            text = await run.text(request.is_disconnected)
        except ClientGone:
            return Response(status_code=499)  # nobody is there to read it (nginx's "client closed request")
        finally:
            run.cancel()
        stream = run.stream
        assert stream.answer is not None
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": MODEL_NAME,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": stream.answer.display_text or text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(stream.answer),
            **answer_extras(stream.answer),
            **keep(stream.answer),
        }

    return router


def document_routes(service: Service) -> APIRouter:
    """The documents: list, card corrections, uploads, page images, summaries, comparisons, removal."""
    router = APIRouter()

    @router.get("/v1/documents")
    def documents(request: Request) -> dict[str, Any]:
        person = person_of(service, request)
        docs, cards = person.documents(), person.cards()
        return {
            "object": "list",
            "data": [
                {
                    "root": d.root,
                    "source": d.source,
                    "chunks": d.chunks,
                    "pages": len(d.pages),
                    "ingested_at": d.ingested_at,
                    "card": card_dict(cards.get((d.root, d.source))),
                }
                for d in docs
            ],
        }

    @router.patch("/v1/documents/{source:path}/card")
    def correct_card(source: str, body: CardChange, request: Request, root: str | None = None) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        if not values:
            fields = ", ".join(CardChange.model_fields)
            raise ApiError(400, f"say what to correct: {fields}", "invalid_request_error")
        try:
            card = person_of(service, request).set_card(source, root, values)
        except CardError as exc:
            raise ApiError(400, str(exc), "invalid_request_error") from None
        return card_dict(card) or {}

    @router.post("/v1/documents")
    def upload(
        request: Request,
        files: list[UploadFile] = File(...),  # noqa: B008 (FastAPI's idiom)
        collection: str | None = Form(None),  # noqa: B008
    ) -> dict[str, Any]:
        person = person_of(service, request)
        person.upload_folder(collection)  # a collection this person may not add to: 403 before any file is saved
        limit = service.settings.server.upload_max_mb * 1024 * 1024
        received = [(f.filename or "upload", f.file.read(int(limit) + 1)) for f in files]
        saved, refused = person.save_uploads(received, collection)
        if refused and not saved:  # nothing to ingest: the refusal is the reply (413 too large, 415 not a document)
            kinds = {kind for _, _, kind in refused}
            status = 413 if kinds == {"too_large"} else 415 if kinds == {"not_a_document"} else 422
            code = kinds.pop() if len(kinds) == 1 else "refused"
            raise ApiError(status, "; ".join(why for _, why, _ in refused), "invalid_request_error", code)
        report, aside = person.ingest_uploads(saved) if saved else (None, {})
        failed = [
            {"file": p.source, "reason": p.reason, "moved_to": aside.get(Path(p.source).name)}
            for p in (report.failed if report else [])
        ]
        return {
            "saved": [
                {"file": s.path.name, "name": s.original_name, "renamed": s.renamed, "duplicate": s.duplicate}
                for s in saved
            ],
            "refused": [{"file": name, "reason": why, "code": kind} for name, why, kind in refused],
            "ingest": None
            if report is None
            else {
                "added": report.added,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "failed": failed,
                "chunks_written": report.chunks_written,
                "seconds": round(report.elapsed_seconds, 2),
            },
        }

    @router.get("/v1/documents/{source:path}/pages/{number:int}.png", response_model=None)
    def page_image(
        source: str, number: int, request: Request, highlight: str | None = None, root: str | None = None
    ) -> Response:
        """The page as a PNG, the chunk ``highlight`` (an id from an answer's sources) marked on it."""
        person = person_of(service, request)
        doc = person.document(source, root)  # 404 alike for an absent document and another's
        if not person.has_page_images(source):
            raise ApiError(400, f"{source!r} is not a PDF or an image: it has no page images", "invalid_request_error")
        passage = None
        if highlight is not None:
            found = person.chunk(highlight)
            if found is None or found[1].get("source") != doc.source or found[1].get("root") != doc.root:
                raise ApiError(404, f"no chunk {highlight!r} in {source!r}", "not_found", "chunk_not_found")
            if int(found[1].get("page", 0)) != number:
                raise ApiError(400, f"chunk {highlight!r} is on page {found[1].get('page')}", "invalid_request_error")
            passage = found[0]
        view = person.page_view(doc.root, doc.source, number, passage)
        headers = {"X-Highlight-Boxes": str(view.boxes), "Cache-Control": "private, max-age=300"}
        return Response(view.png, media_type="image/png", headers=headers)

    @router.post("/v1/documents/{source:path}/summary", response_model=None)
    async def summarize(source: str, body: SummaryRequest, request: Request) -> Any:
        """The document's summary, each point with the pages that back it; kept per document version."""
        person = person_of(service, request)
        person.document(source, body.root)  # 404 now, before any model work or any 200
        return await summary_response(
            lambda cancel, progress: person.summarize(source, body.root, body.language, body.refresh, cancel, progress),
            body.stream,
            "summary",
            request,
        )

    @router.post("/v1/compare", response_model=None)
    async def compare(body: CompareRequest, request: Request) -> Any:
        """Two readable documents lined up topic by topic, each side cited to its own pages."""
        person = person_of(service, request)
        person.document(body.first), person.document(body.second)
        return await summary_response(
            lambda cancel, progress: person.compare(
                (body.first, None), (body.second, None), body.language, cancel, progress
            ),  # fmt: skip
            body.stream,
            "comparison",
            request,
        )

    @router.delete("/v1/documents/{source:path}")
    def remove(source: str, request: Request, root: str | None = None) -> dict[str, Any]:
        person = person_of(service, request)
        doc = person.document(source, root)
        return {"removed": source, "root": doc.root, "chunks": person.remove(doc)}

    return router


def conversation_routes(service: Service) -> APIRouter:
    """A person's saved conversations: list, one with its sources' states, delete."""
    router = APIRouter()

    @router.get("/v1/conversations")
    def conversations(request: Request) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [dataclasses.asdict(c) for c in person_of(service, request).conversations.list()],
        }

    @router.get("/v1/conversations/{conversation_id}")
    def one_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        person = person_of(service, request)
        saved = person.conversations.get(conversation_id)
        turns = []
        for answer in saved.answers:
            states = person.source_states(answer)
            turn = {"answer": answer.text, **answer_extras(answer)}  # "answer": the text, as before
            for source in turn["sources"]:
                source["state"] = states.get(source["number"], "kept")  # kept / changed / removed since
            turns.append(turn)
        return dataclasses.asdict(saved.info) | {"scope": saved.scope, "turns": turns}

    @router.delete("/v1/conversations/{conversation_id}")
    def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        person_of(service, request).conversations.delete(conversation_id)
        return {"deleted": conversation_id}

    return router


async def summary_response(
    run: Callable[[Cancellation, Callable[[Progress], None]], Any], stream: bool, name: str, request: Request
) -> Any:
    """The result of ``run`` as JSON (``{name: ...}``); with ``stream``, NDJSON: its progress, line by line, then
    the result. A client that goes away stops the work at the model's next token (the sections done are kept)."""
    cancel = Cancellation()
    if not stream:
        result = await run_in_threadpool(run, cancel, lambda _: None)
        return {name: result.as_dict()}

    def lines() -> Iterator[str]:
        result = yield from with_progress(lambda progress: run(cancel, progress), cancel,
                                          lambda p: json.dumps({"progress": dataclasses.asdict(p)}) + "\n")  # fmt: skip
        yield json.dumps({name: result.as_dict()}, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})


class KeyFirst:
    """Every request but ``/health`` shows its key before anything else is done for it: before its route is
    matched (an unknown path, a wrong method) and before its body is read (an upload's thousand parts). With
    accounts (``sourcier users``), the key is a person's own (``sourcier users key NAME``), and the person is
    put in the request's state for the routes to read as them; without, it is ``server.api_key`` when one is
    set. A plain ASGI layer, so streamed answers and disconnects pass through as they are."""

    def __init__(
        self, app: Any, key: Callable[[], Any], accounts: Callable[[], Accounts | None], audit: AuditLog | None = None
    ) -> None:
        self.app, self.key, self.accounts, self.audit = app, key, accounts, audit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = given.partition(" ")
            token = token.strip() if scheme.lower() == "bearer" else ""
            accounts = self.accounts()
            if accounts is not None:
                person = accounts.key_holder(token) if token else None
                if person is None:
                    if self.audit is not None:
                        client = scope.get("client") or ("?", 0)
                        self.audit.record("key refused", None, address=client[0], path=scope["path"])
                    await _unauthorized(scope, receive, send, "missing, wrong or revoked API key")
                    return
                scope.setdefault("state", {})["person"] = person
            elif (key := self.key()) is not None and not hmac.compare_digest(
                token.encode(), key.get_secret_value().encode()
            ):
                await _unauthorized(scope, receive, send, "missing or wrong API key")
                return
        await self.app(scope, receive, send)


async def _unauthorized(scope: Any, receive: Any, send: Any, why: str) -> None:
    body = error_body(f"{why} (Authorization: Bearer <key>)", "invalid_api_key", "401")
    await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)


class AnswerResponse(StreamingResponse):
    """A streamed answer whose run is cancelled when the response ends, however it ends (finished, client
    gone, server shutting down, an error while sending)."""

    def __init__(self, run: AnswerRun, content: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.run = run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.run.cancel()


async def sse_chunks(
    run: AnswerRun,
    disconnected: Callable[[], Awaitable[bool]],
    ident: str,
    created: int,
    keep: Callable[[Answer], dict[str, Any]] | None = None,
) -> AsyncIterator[str]:
    """The answer as OpenAI chat-completion chunks (server-sent events), sources in the last one."""

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        async for piece in run.pieces(disconnected):
            yield event({"content": piece})
    except ClientGone:
        return
    except SourcierError as exc:  # the status line is already sent: the error travels as an event
        err = api_error(exc)
        yield f"data: {json.dumps(error_body(err.message, err.kind, err.code), ensure_ascii=False)}\n\n"
        return
    answer = run.answer
    assert answer is not None
    # The streamed pieces are the model's raw words; ``text`` is the answer as checked (invalid [n] removed).
    kept = await run_in_threadpool(keep, answer) if keep is not None else {}
    yield event({}, "stop", usage=usage(answer), **answer_extras(answer), **kept)
    yield "data: [DONE]\n\n"
