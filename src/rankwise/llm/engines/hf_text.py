"""Text helpers every engine that holds a Hugging Face tokenizer (``self.tokenizer``) shares."""

from __future__ import annotations

from rankwise.llm.protocol import tokenize_marked


class HFTokenizerText:
    """``_tokenize``, ``count_tokens`` and ``truncate`` over ``self.tokenizer``; control-token strings that
    ``format_chat`` marked in user text stay plain text."""

    tokenizer: object

    def _tokenize(self, text: str) -> list[int]:
        return tokenize_marked(text, lambda piece, specials: self.tokenizer(
            piece, add_special_tokens=False, split_special_tokens=not specials)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self._tokenize(text)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
