"""The word-level vocabulary of the small text encoders (the shapes world).

Captions of the synthetic shapes dataset use only these words; the tokenizer adds [PAD]=0 and
[UNK]=1 in front, so word i gets id i + 2. Changing this list changes every token id: a
trained model is tied to it.
"""
import re
from typing import Dict, List, Sequence

SHAPES_WORDS = [
    "a", "an", "on", "the", "in", "of", "background",
    "red", "orange", "yellow", "green", "blue", "purple", "white", "black",
    "circle", "circles", "square", "squares", "triangle", "triangles",
    "small", "large", "top", "bottom", "left", "right", "center", "above", "below",
    "two", "three",
]

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0
UNK_ID = 1

# The Hugging Face `Whitespace` pre-tokenizer splits on this pattern: runs of word characters,
# and runs of other non-space characters (punctuation) as separate pieces.
_PIECES = re.compile(r"\w+|[^\w\s]+")


def vocabulary(words: Sequence[str]) -> Dict[str, int]:
    vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
    for word in words:
        if word in vocab:
            raise ValueError(f"duplicate word {word!r} in the vocabulary")
        vocab[word] = len(vocab)
    return vocab


def split_words(prompt: str) -> List[str]:
    """The pieces the tokenizer.json sees: lower-cased, split on whitespace and punctuation."""
    return _PIECES.findall(prompt.lower())


def tokenize(prompt: str, words: Sequence[str] = SHAPES_WORDS) -> List[int]:
    """Token ids of a prompt, exactly as the exported tokenizer.json produces them."""
    vocab = vocabulary(words)
    return [vocab.get(piece, UNK_ID) for piece in split_words(prompt)]


def build_tokenizer_json(words: Sequence[str] = SHAPES_WORDS) -> dict:
    """A Hugging Face tokenizer.json (WordLevel, Lowercase, Whitespace) for these words."""

    def special(content: str, token_id: int) -> dict:
        return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(PAD_TOKEN, PAD_ID), special(UNK_TOKEN, UNK_ID)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocabulary(words), "unk_token": UNK_TOKEN},
    }
