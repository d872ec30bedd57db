"""Interface text of the page in English and French."""

from __future__ import annotations

import locale
import os

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Ask your documents",
        "caption": "Answers come only from your documents, on this machine. Every claim cites its passage.",
        "ask": "Ask a question about your documents",
        "new_conversation": "New conversation",
        "sources": "Sources",
        "cited": "cited",
        "uncited": "not cited",
        "unsupported": "citation not backed by this passage",
        "may_not_match": "The answer may not match its source: {why}.",
        "mismatch_number": "the number {value} is not in the quote",
        "mismatch_negation": "the answer and its quote disagree on a negation",
        "mismatch_name": "the name {value} is not in the quote",
        "mismatch_not_in_passage": "the quote is not in passage [{value}]",
        "page": "page",
        "score": "score",
        "similarity": "similarity",
        "relevance": "relevance",
        "download": "Download the original file",
        "page_image": "{source}, page {page}: the passage is highlighted",
        "page_not_located": "The passage could not be located on the page image: its text is below.",
        "page_unavailable": "The page cannot be shown ({why}): the passage's text is below.",
        "not_found": "Not found in the documents",
        "timings": "retrieval {retrieval:.0f} ms · first token {first:.1f} s · {tps:.1f} tokens/s",
        "invalid_markers": "{n} citation marker(s) pointed to no passage and were removed.",
        "documents": "Documents",
        "conversations": "Conversations ({n})",
        "conversation_missing": "That conversation cannot be opened ({why}).",
        "rename": "Title",
        "export": "Export as Markdown",
        "delete_conversation": "Delete this conversation",
        "not_saved": "This answer could not be kept in the conversation ({why}).",
        "source_removed": "no longer in the documents",
        "source_changed": "changed since",
        "searched_as": "Searched as: {query}",
        "also_searched_as": "Also searched in {language}: {query}",
        "language_en": "English",
        "language_fr": "French",
        "ask_in": "Ask in",
        "ask_in_help": "Limit the next questions to these documents or folders (type to search).",
        "all_documents": "all documents",
        "store_state": "{documents} documents · {chunks} chunks · last ingest {last}",
        "empty_store": "No documents yet: upload some below, or run `python -m ingest data`.",
        "remove": "Remove",
        "removed": "Removed {name} ({chunks} chunks).",
        "upload": "Add documents",
        "ingest_button": "Add to the documents",
        "ingesting": "Reading and indexing {n} file(s)…",
        "ingested": "{added} added, {updated} updated, {unchanged} unchanged.",
        "renamed": "{name}: a different file already has this name, saved as {saved}.",
        "duplicate": "{name}: already in the documents.",
        "failed": "{name}: {reason}",
        "settings": "Settings for this conversation",
        "k": "Passages given to the model",
        "temperature": "Temperature",
        "max_tokens": "Longest answer (tokens)",
        "system_prompt": "System prompt",
        "model": "Model file",
        "language": "Language",
        "loading_model": "Loading the model (once, shared by every session)…",
        "waiting": "Thinking…",
        "queue": "{n} question(s) ahead of yours: the model answers one at a time…",
        "busy": "Another ingest is running: {reason}",
    },
    "fr": {
        "title": "Interrogez vos documents",
        "caption": (
            "Les réponses viennent uniquement de vos documents, sur cette machine. Chaque affirmation cite son passage."
        ),
        "ask": "Posez une question sur vos documents",
        "new_conversation": "Nouvelle conversation",
        "sources": "Sources",
        "cited": "citée",
        "uncited": "non citée",
        "unsupported": "citation non étayée par ce passage",
        "may_not_match": "La réponse ne correspond peut-être pas à sa source : {why}.",
        "mismatch_number": "le nombre {value} n'est pas dans la citation",
        "mismatch_negation": "la réponse et sa citation ne s'accordent pas sur une négation",
        "mismatch_name": "le nom {value} n'est pas dans la citation",
        "mismatch_not_in_passage": "la citation n'est pas dans le passage [{value}]",
        "page": "page",
        "score": "score",
        "similarity": "similarité",
        "relevance": "pertinence",
        "download": "Télécharger le fichier d'origine",
        "page_image": "{source}, page {page} : le passage est surligné",
        "page_not_located": "Le passage n'a pas été retrouvé sur l'image de la page : son texte est ci-dessous.",
        "page_unavailable": "La page ne peut être affichée ({why}) : le texte du passage est ci-dessous.",
        "not_found": "Introuvable dans les documents",
        "timings": "recherche {retrieval:.0f} ms · premier mot {first:.1f} s · {tps:.1f} jetons/s",
        "invalid_markers": "{n} renvoi(s) vers aucun passage ont été retirés.",
        "documents": "Documents",
        "conversations": "Conversations ({n})",
        "conversation_missing": "Cette conversation ne peut pas être ouverte ({why}).",
        "rename": "Titre",
        "export": "Exporter en Markdown",
        "delete_conversation": "Supprimer cette conversation",
        "not_saved": "Cette réponse n'a pas pu être gardée dans la conversation ({why}).",
        "source_removed": "n'est plus dans les documents",
        "source_changed": "modifié depuis",
        "searched_as": "Recherché comme : {query}",
        "also_searched_as": "Aussi cherché en {language} : {query}",
        "language_en": "anglais",
        "language_fr": "français",
        "ask_in": "Chercher dans",
        "ask_in_help": "Limiter les prochaines questions à ces documents ou dossiers (tapez pour chercher).",
        "all_documents": "tous les documents",
        "store_state": "{documents} documents · {chunks} extraits · dernier ajout {last}",
        "empty_store": "Aucun document : ajoutez-en ci-dessous, ou lancez `python -m ingest data`.",
        "remove": "Retirer",
        "removed": "{name} retiré ({chunks} extraits).",
        "upload": "Ajouter des documents",
        "ingest_button": "Ajouter aux documents",
        "ingesting": "Lecture et indexation de {n} fichier(s)…",
        "ingested": "{added} ajouté(s), {updated} mis à jour, {unchanged} inchangé(s).",
        "renamed": "{name} : un autre fichier porte déjà ce nom, enregistré sous {saved}.",
        "duplicate": "{name} : déjà dans les documents.",
        "failed": "{name} : {reason}",
        "settings": "Réglages de cette conversation",
        "k": "Passages donnés au modèle",
        "temperature": "Température",
        "max_tokens": "Réponse la plus longue (jetons)",
        "system_prompt": "Consigne système",
        "model": "Fichier du modèle",
        "language": "Langue",
        "loading_model": "Chargement du modèle (une fois, partagé par toutes les sessions)…",
        "waiting": "Réflexion…",
        "queue": "{n} question(s) avant la vôtre : le modèle répond à une question à la fois…",
        "busy": "Un autre ajout est en cours : {reason}",
    },
}


def system_language() -> str:
    """'fr' when the system locale is French, else 'en'."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            return "fr" if value.lower().startswith("fr") else "en"
    code = locale.getlocale()[0] or ""
    return "fr" if code.lower().startswith("fr") else "en"


def interface_language(setting: str) -> str:
    return system_language() if setting == "auto" else setting


def tr(language: str, key: str, **values: object) -> str:
    text = TEXTS.get(language, TEXTS["en"]).get(key) or TEXTS["en"][key]
    return text.format(**values) if values else text
