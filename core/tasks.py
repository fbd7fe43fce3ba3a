"""The task abstraction: labelled audio items with splits, a kind, a vocabulary and metrics.

A task plugin subclasses ``Task`` and implements ``load_items`` (and, for audio that is not a
file, ``audio``). The embed stage asks a task for its items and their audio; the probe stage
asks for the kind, the label vocabulary, the targets and the metrics. Splits are named
``train``/``valid``/``test``, or fold names for k-fold tasks (``split_mode == "kfold"``: each
fold is the test set once, the others train).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from musicrep.errors import MusicrepError

if TYPE_CHECKING:
    from musicrep.content import ContentIndex

KINDS: tuple[str, ...] = ("multiclass", "multilabel", "regression")
STANDARD_SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Default metric names per kind, primary first (the metrics module implements them).
DEFAULT_METRICS: dict[str, list[str]] = {
    "multiclass": ["accuracy"],
    "multilabel": ["roc_auc", "pr_auc"],
    "regression": ["r2"],
}
KEY_METRICS: list[str] = ["key_weighted", "accuracy"]
#: the most labels a task's vocabulary may hold: every track stores a vector of this length, and
#: a probe fits one output per label (the largest public music vocabularies hold a few thousand)
MAX_LABELS = 20_000


class TaskDataError(MusicrepError):
    """A task's local copy is missing a file or holds one that cannot be parsed."""


@dataclass(frozen=True)
class Item:
    """One labelled clip: a file (or, for generated tasks, none) and a segment of it.

    ``labels`` holds label names (one for multiclass, any number for multilabel) or, for
    regression, one float per target. ``start``/``end`` (seconds) select a segment.
    """

    id: str
    path: str | None
    labels: list = field(default_factory=list)
    split: str = "train"
    start: float | None = None
    end: float | None = None

    @property
    def duration(self) -> float | None:
        """Seconds of the segment, or None for the whole file."""
        if self.end is None:
            return None
        return self.end - (self.start or 0.0)


class Task:
    """Base of every task. Subclasses set ``kind`` and ``label_names`` (``metrics`` too, when not
    their kind's defaults) and implement ``load_items``; items are loaded once, on first use,
    and checked against the vocabulary."""

    kind: str = "multiclass"
    label_names: list[str] = []
    _metrics: list[str] | None = None
    #: The rate the task's audio is stored at, when known: a hint, ``audio`` resamples anyway.
    sample_rate: int | None = None
    split_mode: Literal["trainvaltest", "kfold"] = "trainvaltest"

    def __init__(self) -> None:
        self._items: list[Item] | None = None

    # -- for subclasses -----------------------------------------------------------------
    def load_items(self) -> list[Item]:
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        """Metric names, primary first: the ones the task set, else its kind's defaults."""
        return list(DEFAULT_METRICS[self.kind] if self._metrics is None else self._metrics)

    @metrics.setter
    def metrics(self, names: Sequence[str]) -> None:
        self._metrics = list(names)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def source(self) -> str:
        """What the items are read from, as messages name it: the task's file or folder where it
        has one, else its name."""
        return self.name

    def items(self, split: str | None = None) -> list[Item]:
        """Every item, or those of one split (an unknown split name is an error)."""
        if self._items is None:
            items = list(self.load_items())
            check_items(items, self.kind, self.label_names, source=self.source)
            self._items = items
        if split is None:
            return list(self._items)
        if split not in self.splits:
            raise ValueError(f"{self.name} has no split {split!r}; its splits: {', '.join(self.splits)}")
        return [item for item in self._items if item.split == split]

    @property
    def splits(self) -> list[str]:
        """Split names present, train/valid/test first, then folds in sorted order."""
        present = {item.split for item in self.items()}
        return [s for s in STANDARD_SPLITS if s in present] + sorted(present - set(STANDARD_SPLITS))

    def fold_roles(self, test_fold: int) -> dict[str, list[str]]:
        """The splits each role takes when fold ``test_fold`` tests (see ``fold_roles``). A
        train/valid/test task has one arrangement (``test_fold`` 0)."""
        if self.split_mode != "kfold":
            if test_fold != 0:
                raise ValueError(f"{self.name} has fixed train/valid/test splits; test_fold must be 0")
            return {"train": ["train"], "valid": ["valid"] if "valid" in self.splits else [],
                    "test": ["test"]}
        try:
            return fold_roles(self.splits, test_fold)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def audio(self, item: Item, sample_rate: int) -> np.ndarray:
        """Mono float32 samples of ``item`` at ``sample_rate``; raises ``BadAudioError``."""
        from musicrep.audio import load

        if item.path is None:
            raise ValueError(f"{self.name}: item {item.id!r} has no file and this task cannot "
                             "generate audio")
        return load(item.path, sample_rate, offset=item.start or 0.0, duration=item.duration)

    def crops(self, item: Item, sample_rate: int, seconds: float, count: int,
              rng: np.random.Generator) -> np.ndarray | None:
        """``count`` random crops ``[count, samples]`` of ``item``, each read by seeking to it, so
        pre-training pays for its crops, not for whole tracks. None where this task cannot seek
        (its audio is generated or decoded its own way, or the item is shorter than a crop):
        the caller then decodes the item with ``audio`` and crops that."""
        from musicrep.audio import seek_crops

        if item.path is None or type(self).audio is not Task.audio:
            return None
        return seek_crops(item.path, sample_rate, seconds, count, rng, start=item.start or 0.0, end=item.end)

    def targets(self, items: Sequence[Item]) -> np.ndarray:
        """Probe targets: class indices [N] (multiclass), multi-hot [N, L] (multilabel) or
        float values [N, targets] (regression), in ``label_names`` order."""
        return encode_targets(items, self.kind, self.label_names)

    def content_key(self, item: Item, index: "ContentIndex") -> str:
        """The key the embedding store files ``item``'s clip under: the SHA-256 of its file's
        bytes (``index`` caches them), with the segment's bounds for a ``start``/``end`` item.
        A task whose audio is generated (no file) or read its own way (its own ``audio``) keys an
        item by what makes it: the task's type and config, the item, and its file's digest where
        it has one. Override when a task knows a better key (the HEAR task does, so two task
        folders of the same files share their embeddings). An unreadable file raises ``OSError``."""
        from musicrep.content import segment_key

        if item.path is not None and type(self).audio is Task.audio:
            return segment_key(index.digest(item.path), item.start, item.end)
        config = getattr(self, "config", None)
        payload = {"task": f"{type(self).__module__}.{type(self).__qualname__}",
                   "config": asdict(config) if is_dataclass(config) and not isinstance(config, type) else None,
                   "item": asdict(item),
                   # a file read its own way: its bytes still shape the clip, so a change is a new key
                   "file": None if item.path is None else index.digest(item.path)}
        return "gen-" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def describe(self) -> dict:
        """Counts per split and the vocabulary size, for summaries."""
        counts = {s: len(self.items(s)) for s in self.splits}
        return {"task": self.name, "kind": self.kind, "labels": len(self.label_names),
                "splits": counts, "metrics": list(self.metrics)}


def fold_roles(folds: Sequence[str], test_fold: int) -> dict[str, list[str]]:
    """HEAR's k-fold rotation over the sorted ``folds``: fold ``test_fold`` tests, the next one
    validates, the rest train (the one rotation of musicrep; probing follows it too)."""
    if not 0 <= test_fold < len(folds):
        raise ValueError(f"test_fold must be in 0..{len(folds) - 1}, got {test_fold}")
    valid = folds[(test_fold + 1) % len(folds)]
    return {"train": [f for f in folds if f not in (folds[test_fold], valid)], "valid": [valid],
            "test": [folds[test_fold]]}


def check_items(items: Sequence[Item], kind: str, label_names: Sequence[str], *, source: str) -> None:
    """Refuse items whose labels do not fit the kind and vocabulary, naming the first bad one."""
    if kind not in KINDS:
        raise ValueError(f"{source}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not items:
        raise TaskDataError(f"{source}: the task has no items")
    check_vocabulary(label_names, source)
    vocabulary = set(label_names)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise TaskDataError(f"{source}: item id {item.id!r} appears twice")
        seen.add(item.id)
        if kind == "regression":
            if len(item.labels) != len(label_names):
                raise TaskDataError(f"{source}: item {item.id!r} has {len(item.labels)} targets, "
                                    f"expected {len(label_names)} ({', '.join(label_names)})")
            continue
        if kind == "multiclass" and len(item.labels) != 1:
            raise TaskDataError(f"{source}: multiclass item {item.id!r} has {len(item.labels)} labels")
        unknown = [label for label in item.labels if label not in vocabulary]
        if unknown:
            raise TaskDataError(f"{source}: item {item.id!r} has label {unknown[0]!r}, not in the "
                                "task's vocabulary")


def check_vocabulary(label_names: Sequence[str], source: str) -> None:
    """Refuse a vocabulary of more than ``MAX_LABELS`` labels before anything is sized by it."""
    if len(label_names) > MAX_LABELS:
        raise TaskDataError(f"{source}: {len(label_names)} labels; musicrep takes at most {MAX_LABELS}")


def encode_targets(items: Sequence[Item], kind: str, label_names: Sequence[str]) -> np.ndarray:
    """See ``Task.targets``."""
    if kind == "regression":
        return np.asarray([item.labels for item in items], dtype=np.float32).reshape(len(items), -1)
    index = {name: i for i, name in enumerate(label_names)}
    if kind == "multiclass":
        return np.asarray([index[item.labels[0]] for item in items], dtype=np.int64)
    out = np.zeros((len(items), len(label_names)), dtype=np.float32)
    for row, item in enumerate(items):
        out[row, [index[label] for label in item.labels]] = 1.0
    return out


def encode_target(kind: str, label_names: Sequence[str], labels: Iterable[object]) -> np.ndarray:
    """One track's labels as a float vector (what stores keep and trainers fit): multi-hot over
    the vocabulary (one-hot for multiclass), or the regression values."""
    item = Item(id="", path=None, labels=list(labels))
    encoded = encode_targets([item], kind, label_names)[0]
    if kind == "multiclass":  # one row of the identity, without building the identity
        one_hot = np.zeros(len(label_names), dtype=np.float32)
        one_hot[encoded] = 1.0
        return one_hot
    return np.asarray(encoded, dtype=np.float32)


# -- helpers for task plugins ----------------------------------------------------------
def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as an existing folder, or a ``TaskDataError`` saying what was expected there."""
    p = Path(path).expanduser()
    if not p.is_dir():
        state = "is not a folder" if p.exists() else "does not exist"
        raise TaskDataError(f"{p} {state}; expected {what}")
    return p


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as an existing file, or a ``TaskDataError`` naming it and what it should hold."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TaskDataError(f"missing file {p}: {what}")
    return p


def stable_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by ``(seed, key)``: splits that do not move when items are
    added, removed or reordered."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_by_ratio(key: str, ratios: Sequence[float], seed: int,
                   names: Sequence[str] = STANDARD_SPLITS) -> str:
    """The split for ``key`` (an item id, or an artist for a grouped split) under ``ratios``."""
    u = stable_fraction(seed, key) * float(sum(ratios))
    for name, ratio in zip(names, ratios):
        if u < ratio:
            return name
        u -= ratio
    return names[len(ratios) - 1]


def vocabulary(items: Iterable[Item]) -> list[str]:
    """The sorted set of label names the items use."""
    return sorted({label for item in items for label in item.labels})


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The text of a task file, or a ``TaskDataError`` naming it (unreadable, not ``encoding``)."""
    try:
        return path.read_bytes().decode(encoding)  # line endings as they are (csv reads them itself)
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{path}: not {exc.encoding} text (byte {exc.start})") from None
    except OSError as exc:
        raise TaskDataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_json(path: Path) -> Any:
    """A task file's JSON, or a ``TaskDataError`` naming it (not UTF-8, not JSON, nested too deeply)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise TaskDataError(f"{path}: not readable JSON (nested too deeply)") from None


def read_csv(path: Path, *, delimiter: str = ",", encoding: str = "utf-8",
             max_rows: int | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """A task CSV's header and its rows ``(line number, {column: value})``, or a
    ``TaskDataError`` naming the file and line (not ``encoding``, a field over the csv module's
    limit, a malformed quote, more than ``max_rows`` rows). A row shorter than the header has
    ``""`` in its missing columns."""
    text = read_text(path, encoding)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, restval="")
    try:
        columns = [str(c) for c in reader.fieldnames or []]
        rows = []
        for row in reader:
            rows.append((reader.line_num, row))
            if max_rows is not None and len(rows) > max_rows:
                raise TaskDataError(f"{path}: more than {max_rows} rows; musicrep takes at most {max_rows} here")
    except csv.Error as exc:
        raise TaskDataError(f"{path}, line {reader.line_num}: not readable CSV ({exc})") from None
    return columns, rows


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a small text file (split lists, singer lists)."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def as_mapping(value: object, path: Path, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TaskDataError(f"{path}: expected {what} (a JSON object), got {type(value).__name__}")
    return value
