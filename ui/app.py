"""The sourcier page: ask your documents, read the streamed answer, check each cited passage.

    streamlit run ui/app.py        (or: python -m ui, which applies the server settings)

Display only: every action calls ``service`` (and through it ``rag`` and ``ingest``). Passages
and file names from documents are always shown as plain text, never as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ingest.discover import SUPPORTED_SUFFIXES
from ingest.pipeline import ProgressListener
from rag.accounts import AccessError
from rag.answering.answer import SYSTEM_PROMPT, Answer
from rag.answering.citations import support_spans
from rag.answering.conversations import conversation_markdown
from rag.answering.packing import Turn
from rag.errors import IngestLockedError, SourcierError
from rag.search.cards import DocumentCard
from rag.search.corpus import DocumentInfo
from rag.search.scope import COLLECTION, Scope
from service import Reader, Service, SessionChoices, build_service
from ui.render import describe_timings, highlighted, plain
from ui.texts import interface_language, tr


@st.cache_resource(show_spinner=False)
def shared_service() -> Service:
    import sys

    from ingest.watch import start_watcher
    from rag.settings import load_settings

    args = sys.argv[1:]  # streamlit run ui/app.py -- --config sourcier.toml
    config = Path(args[args.index("--config") + 1]) if "--config" in args[:-1] else None
    settings = load_settings(config)
    service = build_service(settings)
    start_watcher(settings, config)  # paths.watch: kept in step by a process of its own, once per server
    return service


def get_service() -> Service:
    injected = st.session_state.get("service")  # tests put a service built with fakes here
    return injected if injected is not None else shared_service()


@st.cache_data(max_entries=32, show_spinner=False)
def file_bytes(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


class PageProgress(ProgressListener):
    """Ingest progress as a Streamlit progress bar."""

    def __init__(self, label: str) -> None:
        self.bar = st.progress(0.0, text=label)
        self.label = label
        self.total = 0
        self.done = 0
        self.ocr_pages = 0

    def planned(self, files: int, total_bytes: int) -> None:
        self.total = max(files, 1)

    def file_chunked(self, source: str, pages: int, chunks: int, ocr_pages: int = 0) -> None:
        self.ocr_pages += ocr_pages

    def file_finished(self, source: str, nbytes: int) -> None:
        self.done += 1
        ocr = f" · OCR {self.ocr_pages} p." if self.ocr_pages else ""
        self.bar.progress(
            min(1.0, self.done / self.total), text=f"{self.label} {self.done}/{self.total}{ocr}: {source}"
        )


def main() -> None:
    st.set_page_config(page_title="sourcier", page_icon=":material/description:", layout="wide")
    try:
        service = get_service()
    except SourcierError as exc:
        st.error(str(exc))
        st.stop()
    state = st.session_state
    state.setdefault("language", interface_language(service.settings.server.language))
    lang = state.language
    reader = logged_in(service, lang)  # with accounts: the login form until someone logs in
    state.setdefault("messages", [])
    state.setdefault("choices", service.defaults())
    follow_url(reader, lang)
    sidebar(reader, lang)
    st.title(tr(lang, "title"))
    st.caption(tr(lang, "caption"))
    if st.button(tr(lang, "new_conversation"), icon=":material/add_comment:"):
        start_conversation([], None)
    for turn, message in enumerate(state.messages):
        with st.chat_message(message["role"]):
            if message["role"] == "user":
                st.markdown(plain(message["content"]))
            else:
                show_answer(reader, message["answer"], lang, streamed=False, turn=turn)
    scope = scope_chips(reader, lang)
    chosen = [d for d in reader.documents() if scope.admits(d.root, d.source, d.collections)] if scope else []
    if len(chosen) == 2 and st.button(tr(lang, "compare_button"), icon=":material/compare:"):
        names = {"a": Path(chosen[0].source).name, "b": Path(chosen[1].source).name}
        state["whole"] = (tr(lang, "compare_question", **names), [(d.root, d.source) for d in chosen])
    question = st.chat_input(tr(lang, "ask"))
    widen = state.pop("widen", None)
    whole = state.pop("whole", None)
    if question:
        ask(reader, question, lang, scope)
    elif whole:  # a summary (a document's button) or a comparison (two chosen): asked of those documents only
        ask(reader, whole[0], lang, Scope(documents=frozenset(whole[1])))
    elif widen:  # the last question again, in every document it may read (chosen: not routed again)
        every = frozenset((d.root, d.source) for d in reader.documents())
        ask(reader, widen, lang, Scope(documents=every).narrowed(scope))


def logged_in(service: Service, lang: str) -> Reader:
    """The page's reader: the install's owner without accounts; else the person of this browser session's
    login, after the login form (the page stops there until a login succeeds). An ended or expired session,
    or a removed account, shows the form again."""
    accounts = service.accounts()
    if accounts is None:
        return service.reader(None)
    state = st.session_state
    token = state.get("session_token")
    if token is not None:
        try:
            return service.reader(accounts.session(token))
        except AccessError:
            for key in ("session_token", "messages", "conversation_id", "scope_names"):
                state.pop(key, None)
            st.query_params.pop("c", None)
            st.info(tr(lang, "session_ended"), icon=":material/lock_clock:")
    st.title(tr(lang, "title"))
    with st.form("login"):
        name = st.text_input(tr(lang, "user_name"), key="login_name")
        password = st.text_input(tr(lang, "password"), type="password", key="login_password")
        submitted = st.form_submit_button(tr(lang, "log_in"), icon=":material/login:")
    if submitted:
        try:
            person = service.login(name.strip(), password, client_address())
        except AccessError as exc:
            st.error(plain(str(exc)))
        else:
            state.session_token = accounts.open_session(person, service.settings.server.session_hours * 3600)
            st.rerun()
    st.stop()
    raise AssertionError("unreachable")  # st.stop ends the run


def client_address() -> str:
    """The browser's address as Streamlit sees it (for the per-address login limit)."""
    try:
        return str(st.context.ip_address or "")
    except AttributeError:
        return ""


def start_conversation(messages: list[dict[str, Any]], conversation_id: str | None) -> None:
    """Show these messages as the conversation (new keys for its sources); the URL names it, so a reload or
    a bookmark comes back to it."""
    state = st.session_state
    state.messages = messages
    state.conversation_id = conversation_id
    state.conversation = state.get("conversation", 0) + 1
    if conversation_id is None:
        st.query_params.pop("c", None)
    else:
        st.query_params["c"] = conversation_id


def follow_url(reader: Reader, lang: str) -> None:
    """Open the conversation the URL names (``?c=ID``) when it is not the one shown."""
    wanted = st.query_params.get("c")
    if not wanted or wanted == st.session_state.get("conversation_id"):
        return
    try:
        saved = reader.conversations.get(wanted)
    except SourcierError as exc:
        st.error(plain(tr(lang, "conversation_missing", why=exc)))
        start_conversation([], None)
        return
    messages: list[dict[str, Any]] = []
    for answer in saved.answers:
        messages.append({"role": "user", "content": answer.question})
        messages.append({"role": "assistant", "question": answer.question, "answer": answer})
    start_conversation(messages, saved.info.id)
    st.session_state["scope_names"] = saved.scope  # before the sidebar's widget is made


def conversations_panel(reader: Reader, lang: str) -> None:
    """Past conversations (title, date): open one; rename, export or delete the one shown."""
    state = st.session_state
    try:
        saved = reader.conversations.list()
    except SourcierError as exc:
        st.error(str(exc))
        return
    with st.expander(tr(lang, "conversations", n=len(saved)), icon=":material/forum:"):
        current = state.get("conversation_id")
        for info in saved[:50]:
            label = f"{info.title} · {info.updated_at[:10]}"
            if st.button(label, key=f"conv-{info.id}", type="primary" if info.id == current else "tertiary"):
                st.query_params["c"] = info.id
                st.rerun()
        if current is None:
            return
        conversation = reader.conversations.get(current)
        title = st.text_input(tr(lang, "rename"), conversation.info.title, key=f"title-{current}")
        if title != conversation.info.title and title.strip():
            reader.conversations.rename(current, title)
            st.rerun()
        st.download_button(
            tr(lang, "export"),
            conversation_markdown(conversation),
            file_name=f"conversation-{current[:8]}.md",
            mime="text/markdown",
            icon=":material/download:",
        )
        if st.button(tr(lang, "delete_conversation"), icon=":material/delete:", key=f"del-{current}"):
            reader.conversations.delete(current)
            start_conversation([], None)
            st.rerun()


def scope_chips(reader: Reader, lang: str) -> Scope | None:
    """The documents the next question is limited to (the sidebar's choice), shown as a row of chips."""
    names = st.session_state.get("scope_names") or []
    try:
        scope = reader.scope(names)
    except SourcierError as exc:  # a chosen document was removed since: back to all documents
        st.warning(str(exc), icon=":material/filter_alt_off:")
        return None
    everything = tr(lang, "all_documents" if reader.readable is None else "all_readable")
    chips = [f":blue-badge[{plain(name)}]" for name in names] or [f":gray-badge[{everything}]"]
    st.markdown(f"{tr(lang, 'ask_in')}: " + " ".join(chips))
    return scope


def scope_panel(reader: Reader, lang: str) -> None:
    """Pick documents or folders (multi-select with search over the document list) to scope the questions."""
    try:
        docs = reader.documents()
    except SourcierError:
        return
    sources = sorted({d.source for d in docs})
    folders = sorted({f"{s.rsplit('/', 1)[0]}/" for s in sources if "/" in s})
    collections = [f"{COLLECTION}{c.name}" for c in reader.collections()]
    options = collections + folders + sources
    chosen = [n for n in st.session_state.get("scope_names", []) if n in options]
    st.session_state["scope_names"] = chosen  # a removed document leaves the choice
    st.multiselect(
        tr(lang, "ask_in"),
        options,
        key="scope_names",
        placeholder=tr(lang, "all_documents" if reader.readable is None else "all_readable"),
        help=tr(lang, "ask_in_help"),
    )


def ask(reader: Reader, question: str, lang: str, scope: Scope | None = None) -> None:
    state = st.session_state
    with st.chat_message("user"):
        st.markdown(plain(question))
    with st.chat_message("assistant"):
        choices: SessionChoices = state.choices
        try:
            if not reader.service.model_loaded(choices.model_path):
                with st.spinner(tr(lang, "loading_model")):
                    reader.service.model(choices.model_path)
            answerer = reader.answerer(choices)
            history = [Turn(m["question"], m["answer"].text) for m in state.messages if m["role"] == "assistant"]
            queue_note = st.empty()
            with st.spinner(tr(lang, "waiting")):
                stream = answerer.stream(
                    question, history, on_wait=lambda n: queue_note.caption(tr(lang, "queue", n=n)), scope=scope
                )
                queue_note.empty()
                pieces = iter(stream)
                first = next(pieces, "")
            st.write_stream(_chain(first, pieces))
        except SourcierError as exc:
            st.error(str(exc))
            return
        answer = stream.answer
        assert answer is not None
        show_answer(reader, answer, lang, streamed=True, turn=len(state.messages) + 1)
    state.messages.append({"role": "user", "content": question})
    state.messages.append({"role": "assistant", "question": question, "answer": answer})
    try:
        names = state.get("scope_names") or []
        state.conversation_id = reader.save_answer(state.get("conversation_id"), answer, names)
        st.query_params["c"] = state.conversation_id
        reader.answered(answer, names, state.conversation_id)
    except SourcierError as exc:  # the answer stands; only its keeping failed
        st.warning(tr(lang, "not_saved", why=exc), icon=":material/save:")


def _chain(first: str, rest: Any) -> Any:
    """The answer's pieces, escaped: a model copying markdown or HTML from a document (an image link
    would make the browser fetch it) is shown as text."""
    if first:
        yield plain(first)
    for piece in rest:
        yield plain(piece)


def show_answer(reader: Reader, answer: Answer, lang: str, streamed: bool, turn: int) -> None:
    if not answer.found:
        st.info(tr(lang, "not_found"), icon=":material/search_off:")
        if not streamed:
            st.markdown(plain(answer.text))
    elif not streamed:
        st.markdown(plain(answer.display_text))
    for warning in answer.warnings:
        why = tr(lang, f"mismatch_{warning.kind}", value=warning.value)
        st.warning(tr(lang, "may_not_match", why=why), icon=":material/warning:")
    if answer.search_query:
        st.caption(tr(lang, "searched_as", query=plain(answer.search_query)))
    for language, translated in answer.translations.items():
        st.caption(tr(lang, "also_searched_as", language=tr(lang, f"language_{language}"), query=plain(translated)))
    if answer.route:
        show_route(answer.route, lang)
        narrowed = answer.route.get("hard") and not answer.route.get("widened")
        if narrowed and st.button(tr(lang, "widen"), key=f"widen-{turn}", icon=":material/travel_explore:"):
            st.session_state["widen"] = answer.question
    if answer.summary is not None:
        for details in answer.summary.get("documents", [answer.summary]):
            how = tr(lang, "summary_kept") if details["cached"] else f"{details['seconds']:.0f} s"
            st.caption(tr(lang, "summary_caption", document=plain(details["document"]), pages=details["pages"],
                          sections=details["sections"], how=how, **details["check"]))  # fmt: skip
    t = answer.timings
    if answer.found and t.first_token_ms is not None:
        st.caption(tr(lang, "timings", **describe_timings(t)))
    if answer.invalid_citations:
        st.caption(tr(lang, "invalid_markers", n=answer.invalid_citations))
    if answer.sources:
        show_sources(reader, answer, lang, turn)


def show_route(route: dict[str, Any], lang: str) -> None:
    """Which documents the question named and was searched in (rag.search.routing), and a way to ask again in all."""
    names = "; ".join(plain(d["label"]) for d in route["documents"][:5])
    if len(route["documents"]) > 5:
        names += tr(lang, "and_more", n=len(route["documents"]) - 5)
    key = "routed_widened" if route.get("widened") else "routed_in" if route.get("hard") else "routed_first"
    st.caption(tr(lang, key, documents=names))


def source_key(turn: int, number: int) -> str:
    """The key of a source's expander: stable across reruns (its open state survives them), and per
    conversation (a new one starts with every source closed)."""
    return f"src-{st.session_state.get('conversation', 0)}-{turn}-{number}"


def show_sources(reader: Reader, answer: Answer, lang: str, turn: int) -> None:
    st.markdown(f"**{tr(lang, 'sources')}**")
    try:
        states = reader.source_states(answer)
    except SourcierError:
        states = {}
    for source in answer.sources_for_display:
        p = source.passage
        where = f"{p.source}, {tr(lang, 'page')} {p.page}" if p.page else p.source
        mark = tr(lang, "cited") if source.cited else tr(lang, "uncited")
        if states.get(source.number, "kept") != "kept":
            mark += " · " + tr(lang, f"source_{states[source.number]}")
        icon = (
            ":material/check_circle:"
            if source.cited and source.supported
            else (":material/error:" if source.cited else ":material/radio_button_unchecked:")
        )
        label = f"[{source.number}] {where} · {mark}"
        # on_change="rerun": what is inside runs only while the source is open (the page image is not free)
        opened = st.expander(plain(label), icon=icon, key=source_key(turn, source.number), on_change="rerun")
        with opened:
            details = f"{tr(lang, 'score')} {p.score:.4f}"
            if p.rerank_score is not None:
                details = f"{tr(lang, 'relevance')} {p.rerank_score:.2f} · " + details
            if p.similarity is not None:
                details += f" · {tr(lang, 'similarity')} {p.similarity:.2f}"
            st.caption(details)
            if source.cited and not source.supported:
                st.warning(tr(lang, "unsupported"), icon=":material/warning:")
            if opened.open:
                show_passage(reader, answer, source, lang)
                download(reader, p, key=f"dl-{id(answer)}-{source.number}", lang=lang)


def show_passage(reader: Reader, answer: Answer, source: Any, lang: str) -> None:
    """A PDF or image source: its page with the passage highlighted, then the passage's text. Other formats:
    the passage in the text around it (grey), its quoted words highlighted."""
    p = source.passage
    marked = highlighted(p.text, passage_spans(answer, source))
    if not reader.has_page_images(p.source):
        before, after = reader.surroundings(p)
        before = f":gray[…{plain(before)}]" if before else ""
        after = f":gray[{plain(after)}…]" if after else ""
        st.markdown(before + marked + after)
        return
    try:
        view = reader.page_view(p.root, p.source, p.page, p.text)
    except SourcierError as exc:
        st.caption(tr(lang, "page_unavailable", why=str(exc)))
    else:
        st.image(view.png, caption=tr(lang, "page_image", source=p.source, page=p.page))
        if not view.boxes:
            st.caption(tr(lang, "page_not_located"))
    st.markdown(marked)


def passage_spans(answer: Answer, source: Any) -> list[tuple[int, int]]:
    """What to highlight in a source: the quote the answer rests on, else the words of the sentences citing it."""
    q = answer.quote
    if q is not None and q.number == source.number and q.start is not None and q.end is not None:
        return [(q.start, q.end)]
    sentences = [c.sentence for c in answer.citations if c.number == source.number]
    return support_spans(sentences, source.passage.text) if sentences else []


def download(reader: Reader, passage: Any, key: str, lang: str) -> None:
    from rag.search.corpus import DocumentInfo

    path = reader.file_of(DocumentInfo(passage.root, passage.source))
    try:
        data = file_bytes(str(path), path.stat().st_mtime)
    except OSError:
        return
    st.download_button(tr(lang, "download"), data, file_name=path.name, key=key, icon=":material/download:")


def sidebar(reader: Reader, lang: str) -> None:
    state = st.session_state
    with st.sidebar:
        choice = st.selectbox(tr(lang, "language"), ["en", "fr"], index=["en", "fr"].index(lang), key="lang_select")
        if choice != lang:
            state.language = choice
            st.rerun()
        if reader.person is not None:
            account_line(reader, lang)
        conversations_panel(reader, lang)
        st.header(tr(lang, "documents"))
        scope_panel(reader, lang)
        documents_panel(reader, lang)
        upload_panel(reader, lang)
        if reader.person is not None and reader.person.is_admin:
            team_panel(reader, lang)
        settings_panel(reader, lang)


def account_line(reader: Reader, lang: str) -> None:
    """Who is logged in, and the button that ends the session."""
    person = reader.person
    assert person is not None
    name, button = st.columns([1, 1], vertical_alignment="center")
    name.caption(plain(tr(lang, "signed_in", name=person.name, role=person.role)))
    if button.button(tr(lang, "log_out"), icon=":material/logout:", key="logout"):
        accounts = reader.service.accounts()
        token = st.session_state.pop("session_token", None)
        if accounts is not None and token is not None:
            accounts.close_session(token)
        for key in ("messages", "conversation_id", "scope_names"):
            st.session_state.pop(key, None)
        st.query_params.pop("c", None)
        st.rerun()


def team_panel(reader: Reader, lang: str) -> None:
    """For admins: people (add, set a password, remove) and collections (create from a folder, readers)."""
    accounts = reader.service.accounts()
    if accounts is None:
        return
    with st.expander(tr(lang, "team"), icon=":material/group:"):
        try:
            team_people(reader, accounts, lang)
            team_collections(reader, accounts, lang)
        except SourcierError as exc:
            st.error(plain(str(exc)))
        st.markdown(f"**{tr(lang, 'audit')}**")
        rows = [
            {"at": e["at"][:19].replace("T", " "), "who": e.get("person") or e.get("name") or "", "event": e["event"],
             "what": e.get("question") or e.get("file") or e.get("action") or e.get("address") or ""}
            for e in reversed(reader.service.audit.last(50))
        ]  # fmt: skip
        st.dataframe(rows, hide_index=True, key="audit")


def team_people(reader: Reader, accounts: Any, lang: str) -> None:
    st.markdown(f"**{tr(lang, 'people')}**")
    for person in accounts.people():
        readable = tr(lang, "everything") if person.is_admin else ", ".join(c.name for c in accounts.readable(person))
        st.caption(plain(f"{person.name} · {person.role} · {tr(lang, 'reads')}: {readable or '-'}"))
    with st.form("add-person", clear_on_submit=True):
        st.markdown(tr(lang, "add_person"))
        name = st.text_input(tr(lang, "user_name"), key="new_person")
        password = st.text_input(tr(lang, "new_password"), type="password", key="new_person_password")
        role = st.selectbox(tr(lang, "role"), ["member", "admin"], key="new_person_role")
        if st.form_submit_button(tr(lang, "add")):
            accounts.add(name.strip(), password, role)
            reader.record("admin", action="users add", name=name.strip(), role=role)
            flash("success", tr(lang, "done"))
            st.rerun()
    with st.form("edit-person", clear_on_submit=True):
        name = st.selectbox(tr(lang, "user_name"), [p.name for p in accounts.people()], key="edit_person")
        password = st.text_input(tr(lang, "new_password"), type="password", key="edit_person_password")
        reset, remove = st.columns(2)
        if reset.form_submit_button(tr(lang, "reset_password")):
            accounts.reset(name, password)
            reader.record("admin", action="users reset", name=name)
            flash("success", tr(lang, "done"))
            st.rerun()
        if remove.form_submit_button(tr(lang, "remove_person")):
            accounts.remove(name)
            reader.record("admin", action="users remove", name=name)
            flash("success", tr(lang, "done"))
            st.rerun()


def team_collections(reader: Reader, accounts: Any, lang: str) -> None:
    st.markdown(f"**{tr(lang, 'collections')}**")
    members = [p.name for p in accounts.people() if not p.is_admin]
    for c in accounts.collections():
        name, button = st.columns([4, 1], vertical_alignment="center")
        name.caption(plain(f"{c.name}: {', '.join(map(str, c.paths))}"))
        if button.button("", key=f"rm-col-{c.id}", icon=":material/delete:", help=tr(lang, "remove_collection")):
            accounts.remove_collection(c.name)
            reader.record("admin", action="collections remove", name=c.name)
            reader.service.collections_changed()
            flash("success", tr(lang, "done"))
            st.rerun()
        chosen = st.multiselect(
            tr(lang, "grant"), members, default=[r for r in c.readers if r in members], key=f"readers-{c.id}"
        )
        for name in set(chosen) - set(c.readers):
            accounts.grant(c.name, name)
            reader.record("admin", action="collections grant", name=c.name, user=name)
        for name in set(c.readers) & set(members) - set(chosen):
            accounts.revoke(c.name, name)
            reader.record("admin", action="collections revoke", name=c.name, user=name)
    with st.form("add-collection", clear_on_submit=True):
        name = st.text_input(tr(lang, "collection_name"), key="new_collection")
        folder = st.text_input(tr(lang, "collection_folder"), key="new_collection_folder")
        if st.form_submit_button(tr(lang, "create_collection")):
            accounts.create_collection(name.strip(), [Path(folder.strip())])
            reader.record("admin", action="collections create", name=name.strip(), paths=[folder.strip()])
            reader.service.collections_changed()
            flash("success", tr(lang, "done"))
            st.rerun()


def documents_panel(reader: Reader, lang: str) -> None:
    try:
        docs = reader.documents()
    except SourcierError as exc:
        st.error(str(exc))
        return
    if not docs:
        st.info(tr(lang, "empty_store"))
        return
    last = max(d.ingested_at for d in docs)[:16].replace("T", " ")
    st.caption(tr(lang, "store_state", documents=len(docs), chunks=sum(d.chunks for d in docs), last=last))
    cards = reader.cards()
    for i, doc in enumerate(docs):
        name, summarize, edit, button = st.columns([4, 1, 1, 1], vertical_alignment="center")
        pages = len([p for p in doc.pages if p]) or 1
        card = cards.get((doc.root, doc.source))
        about = ", ".join(p for p in (card.organisation, card.doc_type, card.period) if p) if card else ""
        about = f" · {plain(about)}" if about else ""
        name.markdown(f"{plain(doc.source)}  \n:gray[{pages} p. · {doc.chunks} chunks{about}]")
        if summarize.button("", key=f"sum-{i}", icon=":material/summarize:", help=tr(lang, "summarize")):
            question = tr(lang, "summarize_question", name=Path(doc.source).name)
            st.session_state["whole"] = (question, [(doc.root, doc.source)])
            st.rerun()
        if card is not None:
            with edit.popover("", icon=":material/edit_note:", help=tr(lang, "card_help")):
                card_form(reader, doc, card, lang, key=f"card-{i}")
        if button.button("", key=f"rm-{i}-{doc.root}-{doc.source}", icon=":material/delete:", help=tr(lang, "remove")):
            try:
                removed = reader.remove(doc)
                flash("success", plain(tr(lang, "removed", name=doc.source, chunks=removed)))
            except SourcierError as exc:
                flash("error", plain(tr(lang, "busy", reason=exc) if isinstance(exc, IngestLockedError) else str(exc)))
            st.rerun()


def card_form(reader: Reader, doc: DocumentInfo, card: DocumentCard, lang: str, key: str) -> None:
    """Correct what a document is (rag.search.cards): kept when ingested again; empty fields forget a correction."""
    with st.form(key, border=False):
        organisation = st.text_input(tr(lang, "card_organisation"), card.organisation)
        year = st.text_input(tr(lang, "card_year"), str(card.year or ""))
        quarter = st.text_input(tr(lang, "card_quarter"), str(card.quarter or ""))
        when = st.text_input(tr(lang, "card_date"), card.date, placeholder="YYYY-MM-DD")
        kind = st.text_input(tr(lang, "card_type"), card.doc_type)
        if st.form_submit_button(tr(lang, "card_save")):
            given = {"organisation": organisation, "year": year, "quarter": quarter, "date": when, "doc_type": kind}
            now = {"organisation": card.organisation, "year": str(card.year or ""), "quarter": str(card.quarter or ""),
                   "date": card.date, "doc_type": card.doc_type}  # fmt: skip
            changed = {k: v.strip() or None for k, v in given.items() if v.strip() != now[k]}
            try:
                if changed:
                    reader.set_card(doc.source, doc.root, changed)
                flash("success", plain(tr(lang, "card_saved", name=doc.source)))
            except SourcierError as exc:
                flash("error", plain(str(exc)))
            st.rerun()


def flash(kind: str, text: str) -> None:
    """A message that survives the rerun that refreshes the document list."""
    st.session_state.setdefault("flash", []).append((kind, text))


def show_flashes() -> None:
    for kind, text in st.session_state.pop("flash", []):
        getattr(st, kind)(text)


def upload_panel(reader: Reader, lang: str) -> None:
    show_flashes()
    collection = None
    if not reader.is_admin:  # a member adds documents to a collection they read, in its folder
        accounts = reader.service.accounts()
        names = (
            [c.name for c in accounts.readable(reader.person) if any(p.is_dir() for p in c.paths)]
            if accounts and reader.person
            else []
        )
        if not names:
            st.caption(tr(lang, "no_collection_to_add"))
            return
        collection = st.selectbox(tr(lang, "upload_into"), names, key="upload_collection")
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader(
            tr(lang, "upload"), accept_multiple_files=True, type=sorted(s.lstrip(".") for s in SUPPORTED_SUFFIXES)
        )
        submitted = st.form_submit_button(tr(lang, "ingest_button"), icon=":material/upload:")
    if not (submitted and files):
        return
    try:
        saved, refused = reader.save_uploads([(f.name, f.getvalue()) for f in files], collection)
    except SourcierError as exc:
        flash("error", plain(str(exc)))
        st.rerun()
    for name, reason, _ in refused:
        flash("error", plain(tr(lang, "failed", name=name, reason=reason)))
    for s in saved:
        if s.duplicate:
            flash("info", plain(tr(lang, "duplicate", name=s.original_name)))
        elif s.renamed:
            flash("warning", plain(tr(lang, "renamed", name=s.original_name, saved=s.path.name)))
    if saved:
        ingest_uploads(reader, saved, lang)
    st.rerun()  # the document list above is drawn again with the new files


def ingest_uploads(reader: Reader, saved: list[Any], lang: str) -> None:
    progress = PageProgress(tr(lang, "ingesting", n=len(saved)))
    try:
        report, _ = reader.ingest_uploads(saved, progress)  # a failed file is set aside in .failed/
    except SourcierError as exc:
        flash("error", plain(tr(lang, "busy", reason=exc) if isinstance(exc, IngestLockedError) else str(exc)))
        return
    for problem in report.failed:
        flash("error", plain(tr(lang, "failed", name=problem.source, reason=problem.reason)))
    counts = {"added": len(report.added), "updated": len(report.updated), "unchanged": len(report.unchanged)}
    flash("success", tr(lang, "ingested", **counts))


def settings_panel(reader: Reader, lang: str) -> None:
    choices: SessionChoices = st.session_state.choices
    with st.expander(tr(lang, "settings"), icon=":material/tune:"):
        choices.k = st.number_input(tr(lang, "k"), 1, 30, choices.k, key="set_k")
        choices.temperature = st.slider(tr(lang, "temperature"), 0.0, 1.5, choices.temperature, 0.05, key="set_t")
        choices.max_tokens = st.number_input(tr(lang, "max_tokens"), 16, 4096, choices.max_tokens, 16, key="set_m")
        prompt = st.text_area(tr(lang, "system_prompt"), choices.system_prompt or SYSTEM_PROMPT, height=180)
        choices.system_prompt = None if prompt.strip() == SYSTEM_PROMPT.strip() else prompt
        models = [None, *reader.service.model_files()]
        current = models.index(choices.model_path) if choices.model_path in models else 0
        choices.model_path = st.selectbox(
            tr(lang, "model"), models, index=current, format_func=lambda p: "default" if p is None else p.name
        )


main()
