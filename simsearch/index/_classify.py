"""Classifiers trained on a collection's vectors, stored in its storage, applied to queries.

``svm`` trains :class:`simsearch.models.SVC` (probability=True) on the labelled vectors; ``gmm``
trains :class:`simsearch.models.GaussianMixture` on all vectors (labels are not needed). A GMM
also stores an outlier threshold: the 1st percentile of the training log-likelihoods, so a query
scoring below it is flagged as an outlier. Models are stored as versioned JSON in the ``models``
table and survive restarts. ``filter`` picks the training documents in the filter language of
:mod:`simsearch.index._filter` (a plain ``{key: value}`` dict is the metadata equality it always was).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import check_int, check_option
from ..errors import FailedPreconditionError, InvalidArgumentError, InvalidTypeError
from ._filter import build_columns, parse
from ._types import Neighbor

MODEL_KINDS = ("svm", "gmm")
PAYLOAD_VERSION = 1
OUTLIER_PERCENTILE = 1.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class ClassifierInfo:
    name: str
    kind: str
    version: int
    n_samples: int
    dim: int
    classes: tuple[str, ...]  # svm: the labels; gmm: the component numbers as strings
    n_unlabelled: int = 0  # svm: vectors skipped because they have no label (gmm: 0, it needs none)


@dataclass(frozen=True)
class Classification:
    """One query's result: an svm fills ``label``/``probability``, a gmm ``component``,
    ``log_likelihood`` and ``outlier``, and also ``label`` = ``str(component)``, so that for either
    kind ``label`` is one of the model's ``ClassifierInfo.classes``. ``neighbors`` are the k nearest
    stored documents."""

    label: str | None
    probability: float | None
    component: int | None
    log_likelihood: float | None
    outlier: bool | None
    neighbors: tuple[Neighbor, ...]


def check_model_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidTypeError(f"A model name must be a str. Got {type(name).__name__}.")
    if not _NAME.match(name):
        raise InvalidArgumentError(f"A model name must be 1 to 128 characters from [A-Za-z0-9_.-]. Got {name!r}.")
    return name


def check_kind(kind: Any) -> str:
    return check_option(kind, "kind", MODEL_KINDS, func="train_classifier")


def check_params(params: Any) -> dict:
    """A copy of ``params`` (None: {}); it must be a dict with str keys."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidTypeError(
            f"The 'params' of train_classifier must be a dict with str keys. Got {type(params).__name__}."
        )
    for key in params:
        if not isinstance(key, str):
            raise InvalidTypeError(
                f"The 'params' of train_classifier must be a dict with str keys. Got the key {key!r}."
            )
    return dict(params)


def check_filter(flt: Any) -> dict | None:
    """The 'filter' of train_classifier (a dict or its JSON text in the filter language of
    ``_filter``, whose ``{key: value, ...}`` dicts are the metadata equalities it always took),
    checked, as its canonical dict; None when it matches everything. The remote clients send
    this dict as JSON."""
    flt = parse(flt)
    return None if flt is None else flt.to_dict()


def training_data(collection, kind: str, flt: dict | str | None):
    """(X, y, n_unlabelled) for training; y is None for a gmm. An svm learns from labels, so the
    vectors (the filter picked) without one are skipped and counted. Raises FailedPrecondition
    when there is nothing to learn."""
    ids, X, labels = collection.vectors_and_labels(require_labels=False)
    flt = parse(flt)
    if flt is not None:
        # every vector-bearing document (no batch limit), decoded once; the columns live for this call only
        needs_metadata = set(flt.fields) - {"$id", "$label"}
        metadata = collection._metadata_of(ids) if needs_metadata else [None] * len(ids)
        keep = flt.mask(build_columns(metadata, flt.fields, ids=ids, labels=labels), len(ids))
        X, labels = X[keep], [label for label, k in zip(labels, keep) if k]
    n_unlabelled = 0
    if kind == "svm":
        has = np.fromiter((label is not None for label in labels), bool, len(labels))
        n_unlabelled = int(len(labels) - has.sum())
        if n_unlabelled:
            X, labels = X[has], [label for label in labels if label is not None]
    if not len(X):
        what = "labelled vectors" if kind == "svm" else "vectors"
        raise FailedPreconditionError(f"collection {collection.name!r} has no {what} to train on" + (" (after the filter)" if flt is not None else ""))
    if kind == "svm":
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise FailedPreconditionError(
                f"an svm needs at least two classes; collection {collection.name!r} has only {classes!r}."
            )
        return X, np.asarray(labels, dtype=object).astype(str), n_unlabelled
    return X, None, 0


def fit_here(model, X: np.ndarray, y: np.ndarray | None):
    """The default ``fit`` of :func:`train`: the estimator's own, in this thread."""
    return model.fit(X) if y is None else model.fit(X, y)


def train(collection, name: str, kind: str, params: dict, flt: dict | None, fit=fit_here):
    """Fit a model on the collection; returns (payload bytes, ClassifierInfo). ``kind``, ``params``
    and ``flt`` have passed check_kind, check_params and check_filter. Unset seeds default to 0,
    so the same data and params give the same model. ``fit(model, X, y)`` returns the fitted
    estimator (y is None for a gmm); the server passes one that runs it in a worker process."""
    from ..models import SVC, GaussianMixture

    X, y, n_unlabelled = training_data(collection, kind, flt)
    X = X.astype(np.float64)
    params = {"random_state": 0, **({"probability": True} if kind == "svm" else {}), **params}
    try:
        model = SVC(**params) if kind == "svm" else GaussianMixture(**params)
    except TypeError as exc:
        raise InvalidArgumentError(f"train_classifier: bad params for {kind}: {exc}") from None
    if kind == "svm" and model.probability is not True:
        raise InvalidArgumentError(
            "train_classifier: an svm classifier reports probabilities, so params 'probability' must be True "
            f"(or left out). Got {model.probability!r}."
        )
    if kind == "gmm":
        n_comp = check_int(model.n_components, "n_components", 1, 4096, func="train_classifier")
        if n_comp > len(X):
            raise FailedPreconditionError(
                f"a gmm with {n_comp} components needs at least {n_comp} vectors; the collection has {len(X)}."
            )
    try:
        model = fit(model, X, y)
    except np.linalg.LinAlgError as exc:
        raise InvalidArgumentError(
            f"train_classifier: fitting the {kind} failed ({exc}); the vectors are degenerate for these params "
            "(duplicates, too few per class): try other params."
        ) from None
    extra: dict[str, Any] = {"n_unlabelled": n_unlabelled}
    if kind == "svm":
        classes = tuple(str(c) for c in model.classes_)
    else:
        classes = tuple(str(i) for i in range(model.n_components))
        extra["outlier_threshold"] = float(np.percentile(model.score_samples(X), OUTLIER_PERCENTILE))
    payload = {
        "version": PAYLOAD_VERSION,
        "kind": kind,
        "n_samples": int(len(X)),
        "dim": int(X.shape[1]),
        "model": model.to_dict(),
        **extra,
    }
    info = ClassifierInfo(name=name, kind=kind, version=PAYLOAD_VERSION, n_samples=len(X), dim=int(X.shape[1]),
                          classes=classes, n_unlabelled=n_unlabelled)
    return json.dumps(payload).encode(), info


class LoadedModel:
    def __init__(self, name: str, payload: bytes) -> None:
        from ..errors import StorageCorruptionError, UnsupportedFormatError
        from ..models import SVC, GaussianMixture

        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise StorageCorruptionError(f"model {name!r} is unreadable: {exc}") from None
        if data.get("version", 0) > PAYLOAD_VERSION:
            raise UnsupportedFormatError(f"model {name!r} has payload version {data['version']}; upgrade simsearch.")
        self.kind = data["kind"]
        cls = SVC if self.kind == "svm" else GaussianMixture
        self.model = cls.from_dict(data["model"])
        self.threshold = data.get("outlier_threshold")
        classes = (
            tuple(str(c) for c in self.model.classes_) if self.kind == "svm" else tuple(str(i) for i in range(self.model.n_components))
        )
        self.info = ClassifierInfo(name, self.kind, data["version"], data["n_samples"], data["dim"], classes,
                                   int(data.get("n_unlabelled", 0)))

    def apply(self, X: np.ndarray, neighbors: list[list[Neighbor]]) -> list[Classification]:
        X = X.astype(np.float64)
        out = []
        if self.kind == "svm":
            proba = self.model.predict_proba(X)
            best = proba.argmax(axis=1)
            for i in range(len(X)):
                out.append(Classification(
                    label=str(self.model.classes_[best[i]]), probability=float(proba[i, best[i]]),
                    component=None, log_likelihood=None, outlier=None, neighbors=tuple(neighbors[i]),
                ))
            return out
        comp = self.model.predict(X)
        ll = self.model.score_samples(X)
        for i in range(len(X)):
            out.append(Classification(
                label=str(int(comp[i])), probability=None, component=int(comp[i]), log_likelihood=float(ll[i]),
                outlier=bool(ll[i] < self.threshold), neighbors=tuple(neighbors[i]),
            ))
        return out
