"""The workspace's answering model: which article a question is about, and how sure to be.

A multinomial logistic regression over TF-IDF features (text.py), trained on the articles'
titles and example questions. Its probabilities are not trusted as they are: the confidence is
a second, small logistic model (the calibrator) fitted on *held-out* predictions — k-fold cross
validation over the example questions, with some articles left out of each fold's training (an
unknown topic close to the KB's own), plus off-topic questions that no article answers — so
that answers given with calibrated probability c are right about c of the time. That probability
is then reshaped above REVIEW_AT so that the answer threshold (0.9) means "right at least SURE
of the time": an automatic answer must be near certain, not just likely. Nothing here depends on
the search engine's score scale; the search index only supplies candidates and content.

numpy only (no scipy / scikit-learn): the model must train inside a Lambda function and load in
the answering path within the layer size limits. For knowledge bases that are mostly English,
sentence embeddings (encoder.py: what a question means, where TF-IDF only sees the words it uses)
are appended to the TF-IDF features of the same softmax; a model records that it was trained with
them, and refuses to load where the encoder is missing (its weights and calibration assume them).
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import encoder, text

FORMAT = 2
CALIBRATION_FOLDS = 3
L2 = 0.2  # ridge penalty, divided by the number of examples (like C = 5 in scikit-learn's terms)
MIN_STEPS = 1000  # small knowledge bases get more epochs: too few steps leave the model unsure
# The calibrated probability is honest but an automatic answer needs more than "likely": the
# confidence is reshaped so that ANSWER_AT (0.9) is only reached where the calibrated
# probability of being right is SURE (0.97), and stays calibrated below REVIEW_AT (0.7).
SURE, ANSWER_AT, REVIEW_AT = 0.97, 0.9, 0.7
# Unknown topics close to the KB's own (the hardest off-topic questions) are simulated: each fold
# also leaves out one in CLASS_GROUPS of the articles entirely, so their held-out questions can
# only be answered wrongly; they weigh UNSEEN_WEIGHT in the calibrator's fit.
CLASS_GROUPS, MIN_CLASSES_LEFT_OUT, UNSEEN_WEIGHT = 10, 10, 0.3
# Embedding features: the encoder's unit vectors, centred on the training examples' mean and
# re-normalised, times EMBED_SCALE (the TF-IDF word and character groups each have norm 1).
EMBED_SCALE = 2.0
# The encoder is English only: a knowledge base gets embeddings when at least this share of its
# examples is English (a Chinese or mixed one keeps the TF-IDF model, which is good at both).
EMBED_MIN_ENGLISH = 0.8


@dataclass(frozen=True)
class Example:
    text: str
    label: str | None  # article id; None for an off-topic question (calibration only)


# ---------------------------------------------------------------- features


class Vectorizer:
    """TF-IDF with sublinear term frequency; word and character groups each L2-normalised, so
    neither drowns the other whatever the text's length or script."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray):
        self.vocabulary = vocabulary
        self.idf = idf

    @classmethod
    def fit(cls, texts: list[str], min_char_df: int = 2) -> tuple[Vectorizer, list]:
        counted = [text.grams(t) for t in texts]
        df: Counter = Counter()
        for grams in counted:
            df.update(grams.keys())
        n = len(texts)
        vocabulary: dict[str, int] = {}
        idf: list[float] = []
        for gram, count in sorted(df.items()):
            if count >= min_char_df or gram.startswith("w:"):
                vocabulary[gram] = len(idf)
                idf.append(math.log((1 + n) / (1 + count)) + 1.0)
        vectorizer = cls(vocabulary, np.asarray(idf, np.float32))
        return vectorizer, [vectorizer.transform(g) for g in counted]

    def transform(self, grams_or_text) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, values) of one text; unknown grams are dropped."""
        grams = text.grams(grams_or_text) if isinstance(grams_or_text, str) else grams_or_text
        indices, values, is_word = [], [], []
        for gram, count in grams.items():
            i = self.vocabulary.get(gram)
            if i is not None:
                indices.append(i)
                values.append((1.0 + math.log(count)) * float(self.idf[i]))
                is_word.append(gram[0] == "w")
        idx = np.asarray(indices, np.int64)
        val = np.asarray(values, np.float32)
        words = np.asarray(is_word, bool)
        for group in (words, ~words):
            norm = float(np.sqrt((val[group] ** 2).sum()))
            if norm > 0:
                val[group] /= norm
        return idx, val

    def coverage(self, text_: str) -> float:
        """Share of the text's word grams the knowledge base has ever seen (0 for no words)."""
        words = [g for g in text.grams(text_) if g[0] == "w"]
        if not words:
            return 0.0
        return sum(g in self.vocabulary for g in words) / len(words)


# ---------------------------------------------------------------- training


def _train_softmax(rows: list, labels: np.ndarray, classes: int, features: int,
                   epochs: int = 20, rate: float = 0.01, batch: int = 128, seed: int = 0,
                   l2: float = L2, min_steps: int = MIN_STEPS):
    """L2-regularised multinomial logistic regression by mini-batch Adam with a cosine learning
    rate schedule, at least min_steps steps. Each batch is densified over only the features it
    uses, so a step is two small matmuls (the penalty, l2 / n, is applied to those rows only)."""
    weights = np.zeros((features, classes), np.float32)
    bias = np.zeros(classes, np.float32)
    m_w, v_w = np.zeros_like(weights), np.zeros_like(weights)
    m_b, v_b = np.zeros_like(bias), np.zeros_like(bias)
    beta1, beta2, step = 0.9, 0.999, 0
    rng = np.random.default_rng(seed)
    n = len(rows)
    epochs = max(epochs, math.ceil(min_steps / math.ceil(n / batch)))
    penalty = l2 / max(n, 1)
    # the rows as one CSR matrix, so a batch is gathered without a Python loop
    lengths = np.asarray([len(r[0]) for r in rows], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    all_idx = np.concatenate([r[0] for r in rows]) if n else np.zeros(0, np.int64)
    all_val = np.concatenate([r[1] for r in rows]) if n else np.zeros(0, np.float32)
    for epoch in range(epochs):
        lr = rate * 0.5 * (1 + math.cos(math.pi * epoch / epochs)) + 1e-4
        order = rng.permutation(n)
        for start in range(0, n, batch):
            chunk = order[start : start + batch]
            counts = lengths[chunk]
            offsets = np.cumsum(counts) - counts
            positions = np.repeat(starts[chunk] - offsets, counts) + np.arange(int(counts.sum()))
            idx, val = all_idx[positions], all_val[positions]
            seg = np.repeat(np.arange(len(chunk)), counts)
            used, inverse = np.unique(idx, return_inverse=True)
            dense = np.zeros((len(chunk), len(used)), np.float32)
            dense[seg, inverse] = val
            w_used = weights[used]
            z = dense @ w_used + bias
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(chunk)), labels[chunk]] -= 1.0
            p /= len(chunk)
            grad_w = dense.T @ p + penalty * w_used
            grad_b = p.sum(axis=0)
            step += 1
            c1, c2 = 1 - beta1**step, 1 - beta2**step
            m_used = beta1 * m_w[used] + (1 - beta1) * grad_w
            v_used = beta2 * v_w[used] + (1 - beta2) * grad_w * grad_w
            m_w[used], v_w[used] = m_used, v_used
            weights[used] = w_used - lr * (m_used / c1) / (np.sqrt(v_used / c2) + 1e-8)
            m_b = beta1 * m_b + (1 - beta1) * grad_b
            v_b = beta2 * v_b + (1 - beta2) * grad_b * grad_b
            bias -= lr * (m_b / c1) / (np.sqrt(v_b / c2) + 1e-8)
    return weights, bias


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Binary logistic regression by Newton's method (a handful of features: exact and fast)."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    sample = np.ones(len(x)) if weights is None else weights
    w = np.zeros(x1.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(x1 @ w, -30, 30)))
        grad = x1.T @ (sample * (p - y)) + l2 * w
        hess = (x1 * (sample * p * (1 - p))[:, None]).T @ x1 + l2 * np.eye(len(w))
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.abs(delta).max() < 1e-8:
            break
    return w


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores.astype(np.float64) - scores.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def _confidence_features(scores: np.ndarray, coverage: np.ndarray, words: np.ndarray) -> np.ndarray:
    """What the calibrator sees: how peaked the distribution is, how strong the best match is
    in absolute terms (the softmax hides it: an unknown topic can still be "the least unlikely"),
    how familiar the words are and how many there are."""
    top2 = -np.sort(-_softmax(scores), axis=1)[:, :2]
    p1 = np.clip(top2[:, 0], 1e-6, 1 - 1e-6)
    p2 = np.clip(top2[:, 1] if top2.shape[1] > 1 else np.zeros(len(top2)), 1e-6, 1 - 1e-6)  # one article: no rival
    odds = np.log(p1 / (1 - p1))
    return np.column_stack([odds, np.log(p1 / p2), coverage, coverage * odds,
                            scores.max(axis=1).astype(np.float64), np.log1p(words)])


def _reshape(calibrated: float, sure: float = SURE) -> float:
    """Piecewise-linear and monotone: [0, REVIEW_AT] unchanged, [REVIEW_AT, sure] onto
    [REVIEW_AT, ANSWER_AT], [sure, 1] onto [ANSWER_AT, 1]; sure = ANSWER_AT is the identity."""
    if calibrated <= REVIEW_AT or sure <= REVIEW_AT:
        return calibrated
    if calibrated < sure:
        return REVIEW_AT + (calibrated - REVIEW_AT) * (ANSWER_AT - REVIEW_AT) / (sure - REVIEW_AT)
    return ANSWER_AT + (calibrated - sure) * (1 - ANSWER_AT) / (1 - sure)


# ---------------------------------------------------------------- the model


@dataclass
class Embedding:
    """How sentence vectors become features: centred on the training mean, re-normalised, scaled."""

    mean: np.ndarray
    scale: float = EMBED_SCALE
    name: str = encoder.NAME

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Embedding:
        return cls(vectors.mean(axis=0).astype(np.float32), EMBED_SCALE)

    def features(self, vectors: np.ndarray) -> np.ndarray:
        centred = vectors - self.mean
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        return (self.scale * centred / np.maximum(norms, 1e-6)).astype(np.float32)


@dataclass
class Prediction:
    ranked: list[tuple[str, float]]  # (article id, model probability), best first
    confidence: float  # calibrated probability that ranked[0] is the right article
    coverage: float


@dataclass
class Model:
    vectorizer: Vectorizer
    classes: list[str]
    weights: np.ndarray
    bias: np.ndarray
    calibrator: np.ndarray
    info: dict = field(default_factory=dict)
    sure: float = SURE  # see _reshape; ANSWER_AT (the identity) for models of format 1
    embedding: Embedding | None = None  # trained with sentence embeddings: their rows are last in weights

    def scores(self, text_: str, vector: np.ndarray | None = None) -> np.ndarray:
        """vector: the text's sentence embedding when already known (training); else computed."""
        idx, val = self.vectorizer.transform(text_)
        z = (val @ self.weights[idx] if len(idx) else np.zeros(len(self.classes), np.float32)) + self.bias
        if self.embedding is not None:
            vector = encoder.encode([text_])[0] if vector is None else vector
            z = z + self.embedding.features(vector[None, :])[0] @ self.weights[-len(self.embedding.mean):]
        return z

    def probabilities(self, text_: str) -> np.ndarray:
        return _softmax(self.scores(text_))

    def predict(self, text_: str, top: int = 3) -> Prediction:
        z = self.scores(text_)
        p = _softmax(z)
        coverage = self.vectorizer.coverage(text_)
        order = np.argsort(-p)[:top]
        features = _confidence_features(z[None, :], np.asarray([coverage]), np.asarray([len(text.tokens(text_))]))
        weights = self.calibrator[:-1]  # a format-1 calibrator knows only the first four features
        logit = float(features[0, : len(weights)] @ weights + self.calibrator[-1])
        confidence = _reshape(float(1 / (1 + math.exp(-float(np.clip(logit, -30, 30))))), self.sure)
        if coverage == 0.0:
            confidence = 0.0  # not one known word: whatever the prior says, we know nothing
        return Prediction([(self.classes[i], float(p[i])) for i in order], confidence, coverage)

    # ------------------------------------------------------------ persistence

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        vocabulary = sorted(self.vectorizer.vocabulary, key=self.vectorizer.vocabulary.get)
        np.savez_compressed(
            buffer,
            format=np.asarray([FORMAT]),
            vocabulary=np.asarray(json.dumps(vocabulary, ensure_ascii=False)),
            idf=self.vectorizer.idf,
            classes=np.asarray(json.dumps(self.classes, ensure_ascii=False)),
            weights=self.weights.astype(np.float16),
            bias=self.bias,
            calibrator=self.calibrator,
            sure=np.asarray([self.sure]),
            info=np.asarray(json.dumps(self.info, ensure_ascii=False)),
            **({} if self.embedding is None else {"embedder": np.asarray(self.embedding.name),
                                                  "embed_mean": self.embedding.mean,
                                                  "embed_scale": np.asarray([self.embedding.scale])}),
        )
        return buffer.getvalue()

    @classmethod
    def loads(cls, blob: bytes) -> Model:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            version = int(data["format"][0])
            if version not in (1, FORMAT):
                raise ValueError(f"model format {version} is not {FORMAT}")
            vocabulary = json.loads(str(data["vocabulary"]))
            embedding = None
            if "embedder" in data.files:
                if str(data["embedder"]) != encoder.NAME or not encoder.available():
                    raise ValueError(f"the model was trained with {data['embedder']} sentence embeddings, "
                                     "which are not available here")
                embedding = Embedding(data["embed_mean"].astype(np.float32), float(data["embed_scale"][0]))
            return cls(
                vectorizer=Vectorizer({g: i for i, g in enumerate(vocabulary)}, data["idf"]),
                classes=json.loads(str(data["classes"])),
                weights=data["weights"].astype(np.float32),
                bias=data["bias"],
                calibrator=data["calibrator"],
                info=json.loads(str(data["info"])),
                sure=float(data["sure"][0]) if version >= 2 else ANSWER_AT,
                embedding=embedding,
            )


def _fit_classifier(examples: list[Example], classes: list[str], vectors: np.ndarray | None = None):
    """The TF-IDF softmax; with vectors (the examples' sentence embeddings, in order) their
    features are appended to every row, after the vocabulary's."""
    index = {c: i for i, c in enumerate(classes)}
    vectorizer, rows = Vectorizer.fit([e.text for e in examples])
    labels = np.asarray([index[e.label] for e in examples])
    features, embedding = len(vectorizer.vocabulary), None
    if vectors is not None:
        embedding = Embedding.fit(vectors)
        dense = embedding.features(vectors)
        extra = np.arange(features, features + dense.shape[1], dtype=np.int64)
        rows = [(np.concatenate([i, extra]), np.concatenate([v, d])) for (i, v), d in zip(rows, dense)]
        features += dense.shape[1]
    weights, bias = _train_softmax(rows, labels, len(classes), features)
    return vectorizer, weights, bias, embedding


def mostly_english(texts: list[str]) -> bool:
    languages = [text.language(t) for t in texts]
    known = [lang for lang in languages if lang is not None]
    return bool(known) and sum(lang == "en" for lang in known) >= EMBED_MIN_ENGLISH * len(known)


def train(examples: list[Example], folds: int = CALIBRATION_FOLDS, seed: int = 0,
          embeddings: bool | None = None) -> Model:
    """Train on the labelled examples; calibrate on held-out folds and the off-topic examples.
    embeddings: add sentence-embedding features (default: where the encoder is installed and the
    examples are mostly English)."""
    labelled = [e for e in examples if e.label is not None]
    off_topic = [e.text for e in examples if e.label is None]
    classes = sorted({e.label for e in labelled})
    if not classes:
        raise ValueError("nothing to learn from: no article has a title or an example question")
    if embeddings is None:
        embeddings = encoder.available() and mostly_english([e.text for e in labelled])
    vector_of: dict[str, np.ndarray] = {}
    if embeddings:  # each distinct text embedded once, in batches
        distinct = sorted({e.text for e in labelled} | set(off_topic))
        vector_of = dict(zip(distinct, encoder.encode(distinct)))

    def vectors(items: list[Example]) -> np.ndarray | None:
        return np.vstack([vector_of[e.text] for e in items]) if embeddings else None

    # held-out predictions: every labelled example is predicted by a model that never saw it
    rng = np.random.default_rng(seed)
    fold_of = rng.integers(0, folds, len(labelled)) if len(classes) > 1 else np.zeros(len(labelled), int)
    group_of = dict(zip(classes, rng.integers(0, CLASS_GROUPS, len(classes))))
    if len(classes) < MIN_CLASSES_LEFT_OUT:
        group_of = dict.fromkeys(classes, -1)
    held_features, held_correct, held_weight = [], [], []
    for k in range(folds if len(classes) > 1 else 0):
        training = [e for e, f in zip(labelled, fold_of) if f != k and group_of[e.label] != k]
        held = [e for e, f in zip(labelled, fold_of) if f == k]
        fold_classes = sorted({e.label for e in training})
        if len(fold_classes) < 2 or not held:
            continue
        vectorizer, weights, bias, embedding = _fit_classifier(training, fold_classes, vectors(training))
        fold_model = Model(vectorizer, fold_classes, weights, bias, np.zeros(7), embedding=embedding)
        probe = held + [Example(t, None) for t in off_topic]
        z = np.vstack([fold_model.scores(e.text, vector_of.get(e.text)) for e in probe])
        coverage = np.asarray([vectorizer.coverage(e.text) for e in probe])
        words = np.asarray([len(text.tokens(e.text)) for e in probe])
        predicted = [fold_classes[i] for i in z.argmax(axis=1)]
        held_features.append(_confidence_features(z, coverage, words))
        held_correct.extend(1.0 if e.label is not None and e.label == c else 0.0 for e, c in zip(probe, predicted))
        held_weight.extend(UNSEEN_WEIGHT if group_of.get(e.label) == k else 1.0 for e in probe)

    vectorizer, weights, bias, embedding = _fit_classifier(labelled, classes, vectors(labelled))
    if held_features and 0 < sum(held_correct) < len(held_correct):
        calibrator = _fit_logistic(np.vstack(held_features), np.asarray(held_correct), weights=np.asarray(held_weight))
    else:  # too little data to hold anything out (one article): only the words' familiarity counts, and
        # at most for a review (full coverage: 0.80 before the reshape), never an automatic answer
        calibrator = np.asarray([0.0, 0.0, 2.0, 0.0, 0.0, 0.0, -0.6])
    info = {"articles": len(classes), "examples": len(labelled), "offTopic": len(off_topic),
            "features": len(vectorizer.vocabulary), "heldOut": len(held_correct),
            "heldOutAccuracy": round(float(np.mean(held_correct)), 4) if held_correct else None,
            "embeddings": embedding.name if embedding is not None else None}
    return Model(vectorizer, classes, weights, bias, calibrator, info, embedding=embedding)
