"""llama.cpp's own grammar parser, in a process of its own (a grammar that crashes it fails a test, not pytest).

    python tests/grammar_probe.py MODEL.gguf   # then one JSON object a line on stdin: {"grammar": ..., "sample": bool}

For each line it answers one JSON line: ``{"parsed": true|false}``: whether llama.cpp built a grammar sampler from
it (``llama_sampler_init_grammar``, NULL when its parser refuses the grammar); with ``"sample": true`` and a parsed
grammar, it also generates up to 12 tokens under it with the real model (``"text": ...``), the step that crashed.
"""

from __future__ import annotations

import json
import sys


def main(model_path: str) -> int:
    import os

    import llama_cpp

    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")  # llama.cpp's own words (an abort's backtrace) go
    os.dup2(2, 1)  # to stderr, never into the replies

    vocabulary = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(vocabulary._model.model)
    model = None
    for line in sys.stdin:
        request = json.loads(line)
        grammar = request["grammar"]
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        reply: dict[str, object] = {"parsed": bool(sampler)}
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
            if request.get("sample"):
                if model is None:
                    model = llama_cpp.Llama(model_path, n_ctx=512, n_threads=1, verbose=False)
                out = model.create_completion(
                    "Quote the passage: ",
                    grammar=llama_cpp.LlamaGrammar.from_string(grammar, verbose=False),
                    max_tokens=12,
                    temperature=0.0,
                )
                reply["text"] = out["choices"][0]["text"]
        print(json.dumps(reply), file=replies, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
