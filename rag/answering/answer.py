"""Answer a question from the documents: retrieve, pack, generate, cite; or say it is not there.

``Answerer.stream(question, history)`` returns an :class:`AnswerStream`: iterate it for the text as the
model writes it; its ``answer`` (an :class:`Answer` with numbered sources, which were cited, citation
checks and timings) is complete once the iteration ends. ``Answerer.answer`` does both at once.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rag.answering.citations import Citation, check_citations
from rag.answering.crosslingual import languages_to_search, translations_for
from rag.answering.followup import concatenated_query, standalone_question
from rag.answering.packing import PackedPrompt, Passage, Turn, build_messages, pack_prompt
from rag.answering.quotes import (
    NONE_MARK,
    Mismatch,
    Quote,
    QuotedDisplay,
    answer_grammar,
    answer_mismatches,
    parse_quoted,
)
from rag.answering.summary import (
    Comparison,
    PageText,
    Progress,
    Summarizer,
    Summary,
    SummaryCache,
    documents_named,
    progress_note,
    summary_cache,
    summary_kind,
    with_progress,
)
from rag.errors import SourcierError
from rag.llm.base import ChatModel, Prompt
from rag.llm.turns import Cancellation, cancelled
from rag.models.embedding import similarity_floor
from rag.search.cards import CardStore
from rag.search.corpus import Corpus, DocumentInfo
from rag.search.rerank import OperatingPoints, operating_points, read_count
from rag.search.routing import Route
from rag.search.scope import Scope, within
from rag.settings import Settings
from rag.text import LANGUAGE_NAMES, detect_language

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages from the user's documents. "
    "After each sentence, cite the passages that support it with their numbers in square brackets, "
    "like [1] or [2][3]. Never cite a passage that does not say what the sentence says. "
    "If the passages do not contain the answer, reply only: {not_found} "
    "Be brief and answer in {language}."
)
# The quoted style (see rag.answering.quotes): the model copies the passage's sentence, then answers briefly.
QUOTED_SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages from the user's documents. "
    "First copy, word for word, the sentence of a passage that answers the question, after that passage's "
    'number, like this: [n] "copied sentence". On the next line write Answer: and a short answer in {language}, '
    "using the words of the copied sentence. If no passage answers the question, write only: NONE"
)
USER_TEMPLATE = "Passages:\n{passages}\n\nQuestion: {question}"
# Appended to the same user message for the answerability check, so everything before it (system prompt,
# passages, question) is shared with the answer's prompt and evaluated once.
CHECK_SUFFIX = "\n\nDo the passages above state the answer to this question? Reply with yes or no only."
# The quoted style copies: a penalty on repeated words would push the model off the passage's own words.
QUOTE_DECODING = {"repeat_penalty": 1.0}
NOT_FOUND = {
    "en": "I could not find the answer in the documents.",
    "fr": "Je n'ai pas trouvé la réponse dans les documents.",
}


class Searcher(Protocol):
    """Finds the passages for a question; ``corpus`` is what it searches, for everything else that is read;
    ``cards`` what its documents are (``rag.search.cards``: what questions are routed by)."""

    @property
    def corpus(self) -> Corpus: ...

    @property
    def cards(self) -> CardStore: ...

    def search(
        self,
        query: str,
        k: int | None = None,
        scope: Scope | None = None,
        translations: Mapping[str, str] | None = None,
        on_route: Callable[[Route], None] | None = None,
    ) -> list[Passage]: ...


@dataclass(frozen=True)
class Source:
    """A passage given to the model, numbered as in the prompt and the answer."""

    number: int
    passage: Passage
    cited: bool
    supported: bool | None  # None when not cited; else whether every citation of it was backed


@dataclass
class Timings:
    queue_ms: float = 0.0  # waiting for the model's turn (other questions ahead on a shared local model)
    retrieval_ms: float = 0.0
    check_ms: float | None = None  # the answerability check (included in first_token_ms)
    first_token_ms: float | None = None
    answer_start_ms: float | None = None  # quoted style: the first word of the short answer, after the quote
    quote_pieces: int = 0  # quoted style: tokens the quote took before the answer
    rewrite_ms: float | None = None  # a follow-up rewritten to stand on its own before the search
    translate_ms: float | None = None  # the question translated into the documents' other language(s)
    generation_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int | None = None  # of the prompt, tokens already in the model's cache (the system prompt...)
    answer_pieces: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Generation speed after the first token (the prompt's processing is in first_token_ms)."""
        if self.first_token_ms is None or self.answer_pieces < 2:
            return 0.0
        decoding = self.generation_s - self.first_token_ms / 1000
        return (self.answer_pieces - 1) / decoding if decoding > 0 else 0.0


@dataclass
class Answer:
    question: str
    text: str
    language: str
    found: bool
    sources: list[Source] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    invalid_citations: int = 0
    dropped_passages: int = 0
    answerability: float | None = None  # the model's P(yes) that the passages hold the answer
    timings: Timings = field(default_factory=Timings)
    cancelled: bool = False  # generation was stopped before the model finished (the client went away)
    quote: Quote | None = None  # quoted style: the passage's sentence the answer rests on
    warnings: list[Mismatch] = field(default_factory=list)  # why the answer may not match its quote
    search_query: str | None = None  # the follow-up as the model rewrote it to stand on its own, when it did
    # The question as the model translated it into the documents' other language(s), searched too.
    translations: dict[str, str] = field(default_factory=dict)
    # The documents the question named and was searched in (rag.search.routing: Route.as_dict()), when it named some.
    route: dict[str, Any] | None = None
    # A question about whole documents, answered by their summary or comparison (rag.answering.summary): what was done.
    summary: dict[str, Any] | None = None

    @property
    def display_text(self) -> str:
        """The answer as shown: the quote (quoted style) above the short answer."""
        if self.quote is None:
            return self.text
        return f"«{self.quote.text}» [{self.quote.number}]\n\n{_MARKERS_AT_END.sub('', self.text)}"

    @property
    def cited_sources(self) -> list[Source]:
        return [s for s in self.sources if s.cited]

    @property
    def sources_for_display(self) -> list[Source]:
        """The passages given to the model, cited ones first (each keeps its number)."""
        return sorted(self.sources, key=lambda s: (not s.cited, s.number))

    @property
    def unsupported_citations(self) -> list[Citation]:
        return [c for c in self.citations if not c.supported]


@dataclass(frozen=True)
class AskOptions:
    """What one request may choose for itself (the page's sidebar, the API's body): passed down to the answerer
    beside the shared settings, never written into them."""

    k: int
    temperature: float
    max_tokens: int
    system_prompt: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> AskOptions:
        return cls(settings.retrieval.k, settings.llm.temperature, settings.llm.max_tokens, settings.llm.system_prompt)


def system_prompt(template: str | None, language: str, style: str = "free") -> str:
    """The configured (or the style's built-in) instructions with the refusal sentence and language filled in."""
    text = template if template is not None else (QUOTED_SYSTEM_PROMPT if style == "quoted" else SYSTEM_PROMPT)
    return text.replace("{not_found}", NOT_FOUND[language]).replace("{language}", LANGUAGE_NAMES[language])


MAX_QUESTION_CHARS = 4000


def clean_question(question: str, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question without control characters and surrounding blanks; an empty or overlong one is
    refused before any work (retrieval, tokenizing, the model)."""
    question = "".join(ch for ch in question if ch in "\n\t" or unicodedata.category(ch) != "Cc").strip()
    if not question:
        raise SourcierError("the question is empty")
    if len(question) > max_chars:
        raise SourcierError(f"the question is too long ({len(question):,} characters; at most {max_chars:,})")
    return question


class AnswerStream:
    """Text pieces as they are generated; ``answer`` is final once the iteration has ended.

    Iterate it once. Stopping early (``close()``, or leaving the loop) releases the model at once: the
    generator chain down to the model's own is closed explicitly, never left to the garbage collector.
    """

    def __init__(self, pieces: Iterator[str], finish: Callable[[str], Answer]) -> None:
        self._pieces = pieces
        self._finish = finish
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        text = []
        try:
            for piece in self._pieces:
                text.append(piece)
                yield piece
        finally:
            self.close()
        self.answer = self._finish("".join(text))

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


class Answerer:
    """Question -> Answer over one retriever and one model."""

    def __init__(
        self,
        settings: Settings,
        retriever: Searcher,
        llm: ChatModel,
        limit: Scope | None = None,
        summaries: SummaryCache | None = None,
        options: AskOptions | None = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm
        self.limit = limit  # what every search of this answerer is held to (what its asker may read: rag.accounts)
        self.summaries = summaries  # kept summaries (rag.answering.summary; opened beside the store when needed)
        self.options = options or AskOptions.of(settings)
        o = self.options  # the answer's decoding: the settings' with this request's choices (a copy of one group)
        self._decoding = settings.llm.model_copy(update={"temperature": o.temperature, "max_tokens": o.max_tokens})

    def answer(self, question: str, history: Sequence[Turn] = (), scope: Scope | None = None) -> Answer:
        stream = self.stream(question, history, scope=scope)
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer

    def stream(
        self,
        question: str,
        history: Sequence[Turn] = (),
        cancel: Cancellation | None = None,
        on_wait: Callable[[int], None] | None = None,
        scope: Scope | None = None,
    ) -> AnswerStream:
        """Retrieve and pack now (a bad question fails here); generate as the stream is read. Once ``cancel``
        is set the stream ends at the next token (the model stops at once) and its answer is marked
        ``cancelled``. While other questions hold the shared model, ``on_wait(n)`` says how many are ahead.
        With ``scope``, passages come only from its documents (and never from outside ``limit``)."""
        question = clean_question(question)
        scope = within(scope, self.limit)
        language = detect_language(question)
        whole = self._whole_documents(question, scope)  # asked in a conversation too: it names its documents
        if whole is not None:
            return summary_stream(self._summarizer(), question, language, whole, scope, cancel)
        timings = Timings()
        query, rewritten = self._search_query(question, history, cancel, timings, language)
        others, own = self._store_languages(language)
        translations: dict[str, str] = {}
        routed: list[Route] = []  # the documents the question named, told by the search
        if others and not own:  # nothing to find as asked: searched as translated only
            translations = self._translations(query, others, cancel, on_wait, timings)
        passages, searched = self._retrieve(query, scope, translations, cancel, on_wait, timings, routed)
        if searched and others and not translations and not self._confident(passages):
            # Not found as asked with confidence: perhaps written in the store's other language.
            translations = self._translations(query, others, cancel, on_wait, timings)
            if translations:
                routed.clear()
                passages, searched = self._retrieve(query, scope, translations, cancel, on_wait, timings, routed)
        route = routed[-1].as_dict() if routed else None
        if not searched or not self._relevant(passages):
            return self._not_found(
                question,
                language,
                passages,
                timings,
                not searched,
                rewritten=rewritten,
                translations=translations,
                route=route,
            )
        passages = self._worth_reading(passages)
        style = self.settings.llm.answer_style
        system = system_prompt(self.options.system_prompt, language, style)
        packed = pack_prompt(
            self.llm.prompter,
            system=system,
            history=history[-self.settings.llm.history_turns :] if self.settings.llm.history_turns else [],
            passages=passages,
            question=question,
            user_template=USER_TEMPLATE,
            n_ctx=self.llm.n_ctx,
            answer_tokens=self.options.max_tokens,
        )
        timings.prompt_tokens = packed.prompt_tokens
        check: dict[str, float | None] = {}
        raw: list[str] = []  # what the model wrote, as it wrote it

        def pieces() -> Iterator[str]:
            # Only the model's own time counts: a slow reader (the page drawing each piece) is not the model.
            start = time.perf_counter()
            if self.settings.llm.answerability_check:
                check_prompt = self._check_prompt(system, packed, question)
                check["score"] = score = self.llm.answerability(check_prompt, cancel=cancel)
                timings.check_ms = (time.perf_counter() - start) * 1000
                timings.cached_tokens = self.llm.last_cached_tokens
                if score is not None and score < self.settings.llm.min_answerability:
                    yield NOT_FOUND[language]
                    return
            grammar = answer_grammar([p.text for p in packed.passages]) if style == "quoted" else None
            generated = self._generate(packed.prompt, grammar, cancel, timings, time.perf_counter() - start)
            try:
                if grammar is None:
                    for piece in generated:
                        raw.append(piece)
                        yield piece
                else:
                    yield from self._shown_quoted(generated, raw, timings, language, cancel)
            finally:
                generated.close()  # gives the model back now, whoever stopped reading

        def finish(text: str) -> Answer:
            if timings.cached_tokens is None:  # no check: what the answer's own evaluation found cached
                timings.cached_tokens = self.llm.last_cached_tokens
            score = check.get("score")
            if score is not None and score < self.settings.llm.min_answerability:
                answer = declined(question, language, packed.passages, timings)
                answer.answerability = score
                answer.search_query, answer.translations, answer.route = rewritten, translations, route
                return answer
            if style == "quoted":
                answer = self._finish_quoted(question, language, "".join(raw), packed, timings)
            else:
                answer = self._finish(question, language, text, packed.passages, packed.dropped_passages, timings)
            answer.answerability = score
            answer.cancelled = cancelled(cancel)
            answer.search_query, answer.translations, answer.route = rewritten, translations, route
            return answer

        return AnswerStream(pieces(), finish)

    def _whole_documents(self, question: str, scope: Scope | None) -> list[DocumentInfo] | None:
        """The documents a question about whole documents is about (``summary.summary_kind``): those chosen,
        or named by their file names, or the only ones stored; None for any other question."""
        kind = summary_kind(question) if self.settings.llm.summarize_questions else None
        if kind is None:
            return None
        needed = 2 if kind == "compare" else 1
        docs = self.retriever.corpus.documents(scope)
        if scope is not None and scope.documents is not None and len(docs) == needed:
            return docs
        named = documents_named(question, docs)
        if len(named) >= needed:
            return named[:needed]
        return docs if len(docs) == needed else None

    def _summarizer(self) -> Summarizer:
        if self.summaries is None:
            self.summaries = summary_cache(self.settings.paths.store_dir)
        return Summarizer(self.llm, self.retriever.corpus, self.summaries)

    def _search_query(
        self, question: str, history: Sequence[Turn], cancel: Cancellation | None, timings: Timings, language: str
    ) -> tuple[str, str | None]:
        """What the question is searched as, and the rewritten follow-up when the model wrote one
        (``llm.rewrite_followups``); without it, a follow-up is searched after the previous question."""
        if not history:
            return question, None
        if not self.settings.llm.rewrite_followups:
            return concatenated_query(history, question), None
        t0 = time.perf_counter()
        rewritten = standalone_question(self.llm, history, question, self.settings.llm, cancel, language)
        timings.rewrite_ms = (time.perf_counter() - t0) * 1000
        return rewritten, (rewritten if rewritten != concatenated_query(history, question) else None)

    def _store_languages(self, language: str) -> tuple[list[str], bool]:
        """The store's languages other than ``language`` that a question in it is translated into (none when
        ``llm.translate_questions`` is off), and whether the store may hold chunks in ``language`` itself."""
        if not self.settings.llm.translate_questions:
            return [], True
        languages = self.retriever.corpus.languages()
        return languages_to_search(language, languages), languages is None or language in languages

    def _translations(
        self,
        query: str,
        targets: list[str],
        cancel: Cancellation | None,
        on_wait: Callable[[int], None] | None,
        timings: Timings,
    ) -> dict[str, str]:
        """The query in each of the languages ``targets``, written by the model. While other questions hold the
        model, their number is reported first (``on_wait``) and the wait counted as queued."""
        t0 = time.perf_counter()
        with self.llm.activity.hold(cancel, on_wait) as turn:
            timings.queue_ms += (time.perf_counter() - t0) * 1000
            if turn is None:
                return {}
        t0 = time.perf_counter()
        found = translations_for(self.llm, query, targets, self.settings.llm, cancel)
        timings.translate_ms = (time.perf_counter() - t0) * 1000
        return found

    def _retrieve(
        self,
        query: str,
        scope: Scope | None,
        translations: dict[str, str],
        cancel: Cancellation | None,
        on_wait: Callable[[int], None] | None,
        timings: Timings,
        routed: list[Route] | None = None,
    ) -> tuple[list[Passage], bool]:
        """The passages for ``query`` (and its ``translations``), and whether it was searched (not when cancelled
        while waiting for the model's turn). Retrieval (query embedding, cross-encoder) and generation share the
        same cores: a local model lets one of them run at a time, so a question being reranked never slows an
        answer being written. Adds to the timings (a second search after a translation adds its time)."""
        t0 = time.perf_counter()
        with self.llm.activity.hold(cancel, on_wait) as turn:
            waited = (time.perf_counter() - t0) * 1000
            timings.queue_ms += waited
            passages = (
                []
                if turn is None
                else self.retriever.search(
                    query,
                    self.options.k,
                    scope,
                    translations or None,
                    on_route=None if routed is None else routed.append,
                )
            )
        timings.retrieval_ms += (time.perf_counter() - t0) * 1000 - waited
        return passages, turn is not None

    def _confident(self, passages: list[Passage]) -> bool:
        """Whether the best passage found is relevant enough to leave the question untranslated
        (``llm.translate_below``; never without a reranker's score)."""
        best = max((p.rerank_score for p in passages if p.rerank_score is not None), default=None)
        return best is not None and best >= self.settings.llm.translate_below

    def _generate(
        self, prompt: Prompt, grammar: str | None, cancel: Cancellation | None, timings: Timings, busy: float
    ) -> Iterator[str]:
        """The model's pieces, timed (``busy``: model time already spent on this answer); ends at once when
        ``cancel`` is set, and closes the model's generator however it ends."""
        decoding = self._decoding
        if grammar is not None:
            decoding = decoding.model_copy(update=QUOTE_DECODING)
        generated = iter(self.llm.stream(prompt, decoding=decoding, cancel=cancel, grammar=grammar))
        try:
            while not cancelled(cancel):
                start = time.perf_counter()
                piece = next(generated, None)
                busy += time.perf_counter() - start
                timings.generation_s = busy
                if piece is None or cancelled(cancel):
                    return
                if timings.first_token_ms is None:
                    timings.first_token_ms = busy * 1000
                timings.answer_pieces += 1
                yield piece
        finally:
            close = getattr(generated, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _shown_quoted(
        generated: Iterator[str], raw: list[str], timings: Timings, language: str, cancel: Cancellation | None
    ) -> Iterator[str]:
        """The quoted style's output as the reader sees it: «quote» [n], then the short answer."""
        display = QuotedDisplay()
        for piece in generated:
            raw.append(piece)
            shown = display.feed(piece)
            if display.answering and timings.answer_start_ms is None:
                timings.answer_start_ms = timings.generation_s * 1000
                timings.quote_pieces = timings.answer_pieces - 1
            if shown:
                yield shown
        if not cancelled(cancel):
            tail = display.end()
            yield NOT_FOUND[language] if display.none else tail

    def _check_prompt(self, system: str, packed: PackedPrompt, question: str) -> Prompt:
        """The answer's own messages (same system prompt, history and passages) plus the yes/no line."""
        messages = build_messages(system, packed.history, packed.passages, question, USER_TEMPLATE + CHECK_SUFFIX)
        return self.llm.prompter.render(messages)

    def _points(self) -> OperatingPoints:
        return operating_points(self.settings, getattr(self.retriever, "reranker", None))

    def _relevant(self, passages: list[Passage]) -> bool:
        """Whether the passages may hold the answer: the best vector similarity reaches
        ``retrieval.similarity_floor`` and, when a reranker scored them, the best relevance reaches
        ``retrieval.min_rerank_score`` (or the reranker's own value). Otherwise the model is not called."""
        if not passages:
            return False
        best = max((p.similarity for p in passages if p.similarity is not None), default=None)
        if best is not None and best < similarity_floor(self.settings):
            return False
        relevance = max((p.rerank_score for p in passages if p.rerank_score is not None), default=None)
        return relevance is None or relevance >= self._points().min_relevance

    def _worth_reading(self, passages: list[Passage]) -> list[Passage]:
        """The reranked passages the model reads: the best, then the next ones while their relevance reaches
        ``retrieval.min_passage_relevance`` (or the reranker's own value)."""
        scores = [p.rerank_score for p in passages if p.rerank_score is not None]
        if not passages or len(scores) < len(passages):
            return passages
        return passages[: read_count(scores, self._points().min_passage_relevance)]

    def _not_found(
        self,
        question: str,
        language: str,
        passages: list[Passage],
        timings: Timings,
        cancelled: bool = False,
        rewritten: str | None = None,
        translations: dict[str, str] | None = None,
        route: dict[str, Any] | None = None,
    ) -> AnswerStream:
        answer = declined(question, language, passages, timings)
        answer.cancelled = cancelled  # cancelled while waiting for its turn: nothing was searched
        answer.search_query, answer.translations, answer.route = rewritten, translations or {}, route

        def finish(_: str) -> Answer:
            return answer

        return AnswerStream(iter([answer.text]), finish)

    def _finish(
        self, question: str, language: str, text: str, passages: list[Passage], dropped: int, timings: Timings
    ) -> Answer:
        report = check_citations(text, [p.text for p in passages])
        by_number: dict[int, list[Citation]] = {}
        for c in report.citations:
            by_number.setdefault(c.number, []).append(c)
        sources = [
            Source(n, p, n in by_number, all(c.supported for c in by_number[n]) if n in by_number else None)
            for n, p in enumerate(passages, 1)
        ]
        found = not is_abstention(report.text)
        return Answer(
            question=question,
            text=report.text.strip(),
            language=language,
            found=found,
            sources=sources,
            citations=report.citations,
            invalid_citations=report.invalid_markers,
            dropped_passages=dropped,
            timings=timings,
        )

    def _finish_quoted(self, question: str, language: str, raw: str, packed: PackedPrompt, timings: Timings) -> Answer:
        """The quoted style's answer: the short answer citing the quote's passage, supported when the quote is
        in that passage word for word, with warnings when the answer and its quote disagree."""
        passages = packed.passages
        parsed = parse_quoted(raw, [p.text for p in passages])
        if not parsed.well_formed:  # a model that did not keep to the shape (no grammar): judged as free text
            return self._finish(question, language, raw, passages, packed.dropped_passages, timings)
        if parsed.quote is None or not parsed.answer or parsed.answer == NONE_MARK or is_abstention(parsed.answer):
            answer = declined(question, language, passages, timings)
            answer.dropped_passages = packed.dropped_passages
            return answer
        quote = parsed.quote
        exists = 1 <= quote.number <= len(passages)
        warnings = answer_mismatches(parsed.answer, quote.text, question) if quote.verbatim else []
        if not quote.verbatim:
            warnings.insert(0, Mismatch("not_in_passage", str(quote.number)))
        sources = [
            Source(n, p, n == quote.number, quote.verbatim if n == quote.number else None)
            for n, p in enumerate(passages, 1)
        ]
        return Answer(
            question=question,
            text=f"{parsed.answer} [{quote.number}]" if exists else parsed.answer,
            language=language,
            found=True,
            sources=sources,
            citations=[Citation(quote.number, parsed.answer, quote.verbatim, 1.0 if quote.verbatim else 0.0)]
            if exists
            else [],
            invalid_citations=0 if exists else 1,
            dropped_passages=packed.dropped_passages,
            timings=timings,
            quote=quote,
            warnings=warnings,
        )


def declined(question: str, language: str, passages: list[Passage], timings: Timings) -> Answer:
    """ "Not found in the documents", in the question's language, with the passages listed as uncited."""
    sources = [Source(n, p, False, None) for n, p in enumerate(passages, 1)]
    return Answer(question, NOT_FOUND[language], language, found=False, sources=sources, timings=timings)


def build_answerer(
    settings: Settings,
    llm: ChatModel | None = None,
    retriever: Searcher | None = None,
    limit: Scope | None = None,
    summaries: SummaryCache | None = None,
    options: AskOptions | None = None,
) -> Answerer:
    """The one wiring of an answer, for the CLI, the LangChain chain, the page and the API: the retriever and
    model given (or the configured ones: the model loads after the cheap empty-store check), held to ``limit``,
    with one request's ``options``."""
    from rag.llm import load_llm
    from rag.search.retrieval import build_retriever

    retriever = retriever if retriever is not None else build_retriever(settings)
    return Answerer(settings, retriever, llm if llm is not None else load_llm(settings), limit, summaries, options)


_ABSTAIN = re.compile(
    r"(could not find|cannot find|can't find|couldn't find|not (?:contain|mention|provide)|no information|"
    r"n'ai pas trouv|ne trouve pas|ne contiennent pas|ne mentionnent pas|aucune information)",
    re.IGNORECASE,
)


_MARKERS_AT_END = re.compile(r"(?:\s*\[\d+\])+\s*$")


def is_abstention(text: str) -> bool:
    """Whether the model said the documents do not hold the answer (and did not answer anyway)."""
    return bool(_ABSTAIN.search(text)) and not re.search(r"\[\d+\]", text)


def summary_stream(
    summarizer: Summarizer,
    question: str,
    language: str,
    docs: Sequence[DocumentInfo],
    scope: Scope | None,
    cancel: Cancellation | None,
) -> AnswerStream:
    """A question about whole documents answered by their summary (one) or comparison (two): a line of
    progress per section as the stream goes, then the points, each citing its pages as numbered sources."""
    cancel = cancel if cancel is not None else Cancellation()
    done: dict[str, Answer] = {}
    start = time.perf_counter()

    def run(on_progress: Callable[[Progress], None]) -> Summary | Comparison:
        if len(docs) == 2:
            return summarizer.compare(docs[0], docs[1], language, scope, cancel, on_progress)
        return summarizer.summarize(docs[0], language, scope, cancel, on_progress)

    def pieces() -> Iterator[str]:
        result = yield from with_progress(run, cancel, lambda p: f"({progress_note(p, language)})\n")
        done["answer"] = answer = summary_answer(question, language, result, time.perf_counter() - start)
        yield ("\n" if answer.sources else "") + answer.text

    def finish(_: str) -> Answer:
        # stopped before it ended: nothing was written
        return done.get("answer") or Answer(question, "", language, found=False, cancelled=True)

    return AnswerStream(pieces(), finish)


def summary_answer(question: str, language: str, result: Summary | Comparison, seconds: float) -> Answer:
    """A summary or comparison as an answer: its points with ``[n]`` markers, one numbered source per cited page."""
    sources: dict[tuple[str, str, int], Source] = {}
    citations: list[Citation] = []

    def marked(point_text: str, summary: Summary, pages: Sequence[int], supported: bool) -> str:
        marks = []
        for page in pages:
            key = (summary.root, summary.source, page)
            if key not in sources and page in summary.page_texts:
                sources[key] = Source(len(sources) + 1, _page_passage(summary, summary.page_texts[page]), True, True)
            if key in sources:
                marks.append(sources[key].number)
                citations.append(Citation(sources[key].number, point_text, supported, 1.0 if supported else 0.0))
        return f"{point_text} {''.join(f'[{n}]' for n in marks)}".rstrip()

    if isinstance(result, Summary):
        lines = [f"- {marked(p.text, result, p.pages, p.supported)}" for p in result.points]
        details = result.details()
        cancelled_ = result.cancelled
    else:
        lines = []
        for row in result.rows:
            lines.append(f"* {row.topic}")
            for label, side, summary in (("A", row.a, result.a), ("B", row.b, result.b)):
                said = marked(side.text, summary, side.pages, side.supported) if side is not None else "-"
                lines.append(f"  {label} ({Path(summary.source).name}): {said}")
        details = {"kind": "compare", "documents": [result.a.details(), result.b.details()]}
        cancelled_ = result.cancelled
    answer = Answer(question, "\n".join(lines), language, found=bool(lines), sources=list(sources.values()))
    answer.citations, answer.cancelled, answer.summary = citations, cancelled_, details
    answer.timings.generation_s = seconds
    return answer


def _page_passage(summary: Summary, page: PageText) -> Passage:
    return Passage(page.chunk_id, page.text, summary.source, page.number, 0, len(page.text), 1.0, root=summary.root)
