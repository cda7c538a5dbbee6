"""The LatentUM text tokenizer: a ``PreTrainedTokenizerFast`` built in code from a fixed vocabulary.

Every piece of text the model reads or writes is VSP wording: questions, yes/no, U/D/L/R,
``Done!``, coordinates (``3,2`` is one token), and VSP tables, whose syntax gets whole-piece tokens
(``| Row 3 |``, `` # |``, `` Col 5 |``) so a level-8 table is 90 tokens, not 300. Pre-tokenization isolates the
longest vocabulary piece at each point and decoding concatenates, so ``decode(encode(text)) == text``
for any text made of the vocabulary; anything else raises instead of silently becoming ``<unk>``.
"""

from __future__ import annotations

import re

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<img_ctx>"
SPECIAL_TOKENS = [PAD, UNK, EOS, IMG_START, IMG_END, IMG_CONTEXT]

_TABLE_PIECES = (
    ["| |", "\n"]
    + [f" Col {k} |" for k in range(1, 9)]
    + [f"| Row {k} |" for k in range(1, 9)]
    + [f" {s} |" for s in "@*#_%!"]
)
# ``r,c`` cell coordinates as single tokens: the coordinate listing the sub-task answers reason over
# (latentum_world/data/prompts.py) writes one per cell, and a lookup becomes matching one token
_COORDINATES = [f"{r},{c}" for r in range(1, 9) for c in range(1, 9)]
_WORDS = """
Is there a hole in row column Where the player goal relative to Which map matches image this action
sequence safe What next move reach Describe as table Above Below Left Right Yes No Done! on at size
of A B C D U L R N Y Output Answer The This are is and Row Column map. maze
""".split()
_PUNCT = list("?,.:;()<>-*#@_%!|x")
_VOCAB_PIECES = (
    _TABLE_PIECES
    + [w for w in _WORDS]
    + [" " + w for w in _WORDS]
    + [str(d) for d in range(10)]
    + [" " + str(d) for d in range(10)]
    + _PUNCT
    + [" ", "\n"]
    + _COORDINATES
)


def vocabulary() -> list[str]:
    """Token strings in id order: special tokens first, then the text pieces (deduplicated, stable)."""
    seen: dict[str, None] = {}
    for piece in SPECIAL_TOKENS + _VOCAB_PIECES:
        seen.setdefault(piece, None)
    return list(seen)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The project's tokenizer (deterministic: the same ids on every machine)."""
    vocab = {tok: i for i, tok in enumerate(vocabulary())}
    pieces = sorted((p for p in vocab if p not in SPECIAL_TOKENS), key=len, reverse=True)
    # longest match first; anything else falls through as one character, which has no id -> error in encode
    pattern = "|".join(re.escape(p) for p in pieces) + r"|."
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = LatentUMTokenizer(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        additional_special_tokens=[IMG_START, IMG_END, IMG_CONTEXT],
    )
    return tok


class LatentUMTokenizer(PreTrainedTokenizerFast):
    """``PreTrainedTokenizerFast`` that refuses text outside its vocabulary (no silent ``<unk>``)."""

    def encode_text(self, text: str) -> list[int]:
        """Ids of ``text`` (no special tokens added); raises ``ValueError`` on out-of-vocabulary text."""
        ids = self(text, add_special_tokens=False)["input_ids"]
        if self.unk_token_id in ids:
            bad = sorted({t for t, i in zip(self.convert_ids_to_tokens(ids), ids) if i == self.unk_token_id})
            pieces = self.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
            unknown = sorted({p for p, _ in pieces if p not in self.get_vocab()})
            raise ValueError(f"text outside the tokenizer's vocabulary: {unknown or bad} in {text[:80]!r}")
        return ids

    def decode_text(self, ids) -> str:
        return self.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
