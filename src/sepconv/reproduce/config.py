"""The sweep configuration: one TOML file, read into frozen, validated dataclasses.

A config names the data, one training recipe shared by every row, the latency measurement, and
the rows (model x optional standard twin x number of seeds), each of which may change the recipe
in a stated way (fewer epochs, a training subset). Every key is checked on load; an error names
the file and the key, says what was expected and what was received. Layout::

    data = "fashion-mnist"        # a `sepconv train --data` spec
    threads = 2                   # intra-op threads for training, shared by the jobs
    jobs = 1                      # runs trained at once, each in its own process
    augment = true                # random crop + horizontal flip (the dataset's default)
    random_erasing = 0.0          # probability of random erasing after them (0: none)
    image_size = 224              # optional: resize every image to this side (default: as is)
    device = "cpu"                # where to train: "cpu", "cuda" or "cuda:N" (CLI: --device)
    target_accuracy = 0.95        # optional: report each run's training time to this accuracy

    [recipe]                      # any TrainConfig field except `seed`
    epochs = 10
    lr = 0.1

    [latency]                     # CPU latency of every row, measured after training
    batch_sizes = [1, 256]

    [[row]]
    name = "mobilenet_v1_025"
    model = "mobilenet_v1"
    model_kwargs = { width_mult = 0.25 }
    seeds = 3

    [[row]]
    name = "conv_mobilenet_v1_025"
    model = "mobilenet_v1"
    model_kwargs = { width_mult = 0.25 }
    twin = "standard"             # its standard-conv twin (sepconv.convert.twin.standard_twin)
    seeds = 3

A row may also set ``train_images`` (a training subset), ``recipe = { ... }`` (its changes to the
recipe), ``random_erasing`` (its own probability), and ``note`` (one line under the table).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepconv.reproduce.checks import MAX_SEEDS, KeyChecker, model_kwargs_from, recipe_from
from sepconv.train.config import TrainConfig
from sepconv.utils.validation import MAX_SIDE, MAX_THREADS, invalid

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged as tomli
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

TWIN_KINDS = ("standard",)
# Set by the sweep from the data, never by a row: the model must fit the dataset.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOP_KEYS = (
    "data",
    "image_size",
    "threads",
    "jobs",
    "augment",
    "random_erasing",
    "test_images",
    "device",
    "target_accuracy",
    "recipe",
    "latency",
    "row",
)
_ROW_KEYS = (
    "name",
    "model",
    "model_kwargs",
    "twin",
    "seeds",
    "train_images",
    "recipe",
    "note",
    "random_erasing",
)
_LATENCY_KEYS = ("batch_sizes", "threads", "warmup", "repeats", "max_time_s")
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class LatencyConfig:
    """How the CPU latency of every row is measured (:func:`sepconv.bench.timing.measure`).

    Args:
        batch_sizes: Batch sizes to time, each with its own input.
        threads: Intra-op threads while timing; ``None`` uses the sweep's training threads.
        warmup: Untimed calls before timing.
        repeats: Timed blocks per batch size (at least 3 are always taken).
        max_time_s: Budget of timed blocks per (row, batch size), so a large model stops early.
    """

    batch_sizes: tuple[int, ...] = (1, 256)
    threads: int | None = None
    warmup: int = 2
    repeats: int = 10
    max_time_s: float = 20.0


@dataclass(frozen=True)
class RowConfig:
    """One row of the table: a registered model, optionally as its standard twin.

    Args:
        name: Row name (also its run folder); letters, digits, ``_``, ``.``, ``-``.
        model: Registered model name (``sepconv zoo``).
        model_kwargs: Extra builder arguments (e.g. ``width_mult``); ``num_classes``,
            ``in_chans`` and ``small_input`` come from the data.
        twin: ``None`` for the model itself, ``"standard"`` for its standard-conv twin: every
            depthwise + pointwise pair replaced by one standard conv
            (:func:`sepconv.convert.twin.standard_twin`; Howard et al. 2017, Table 4).
        seeds: Number of seeds, ``0 .. seeds - 1``.
        train_images: Train on the first N training images (file order) instead of all.
        recipe: The sweep recipe with this row's overrides applied (``seed`` is set per run).
        overrides: The row's recipe overrides, as written.
        note: Free text printed under the table (why a row is reduced, for instance).
        random_erasing: This row's probability of random erasing, replacing the sweep's
            (``None``: the sweep's).
    """

    name: str
    model: str
    model_kwargs: Mapping[str, Any]
    twin: str | None
    seeds: int
    train_images: int | None
    recipe: TrainConfig
    overrides: Mapping[str, Any]
    note: str = ""
    random_erasing: float | None = None

    @property
    def changes(self) -> dict[str, Any]:
        """What this row does differently from the sweep recipe (for the table)."""
        out = dict(self.overrides)
        if self.train_images is not None:
            out["train_images"] = self.train_images
        if self.random_erasing is not None:
            out["random_erasing"] = self.random_erasing
        return out

    def identity(self) -> dict[str, Any]:
        """The facts that decide a run's outcome (seed aside): compared when resuming."""
        return {
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "twin": self.twin,
            "train_images": self.train_images,
            "recipe": self.recipe.to_dict(),
        }


@dataclass(frozen=True)
class ReproduceConfig:
    """A whole sweep, as read from one TOML file by :func:`load_config`.

    Args:
        name: The file's stem; results go to ``results/<name>``, runs to
            ``runs/reproduce/<name>``.
        path: Where the config was read from.
        text: The file's text, copied next to the results.
        data: Dataset spec as ``sepconv train --data`` takes it.
        threads: Intra-op threads for training, in all, at most the CPUs the sweep may use
            (see :func:`sepconv.reproduce.plan.split_threads`): with ``jobs > 1`` each run
            gets ``threads // jobs`` of them (at least 1).
        augment: Train with the dataset's default augmentation
            (:func:`sepconv.data.default_augment`).
        test_images: Evaluate on the first N test images only (``None``: all of them).
        recipe: The shared training recipe.
        latency: How latency is measured.
        rows: The rows, in table order.
        random_erasing: Probability of :class:`sepconv.data.RandomErasing` after the default
            augmentation, ``0 <= p <= 1``; 0 (the default) erases nothing.
        jobs: Runs trained at the same time, each in its own worker process (1: one after the
            other in this process). Small CNNs use a second core poorly, so on a small CPU
            long runs of them can finish sooner side by side at one thread each; on one GPU,
            several small models fill it better than one.
        device: Where the runs train by default: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        target_accuracy: A test accuracy (fraction) whose time to reach, in training time from
            the first step (evaluation and one-time compilation excluded), every run reports;
            ``None``: not reported.
        image_size: Side every image is resized to (:meth:`sepconv.data.ImageDataset.resized`),
            e.g. 224 to train deployment-size models on Fashion-MNIST; ``None``: the set's own.
    """

    name: str
    path: Path
    text: str
    data: str
    threads: int
    augment: bool
    test_images: int | None
    recipe: TrainConfig
    latency: LatencyConfig
    rows: tuple[RowConfig, ...] = field(default_factory=tuple)
    random_erasing: float = 0.0
    jobs: int = 1
    device: str = "cpu"
    target_accuracy: float | None = None
    image_size: int | None = None

    def row(self, name: str) -> RowConfig:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        names = ", ".join(r.name for r in self.rows)
        raise invalid("row", f"one of {names} (rows of {self.path})", name)

    def erasing(self, row: RowConfig) -> float:
        """The probability of random erasing ``row`` trains with: its own, else the sweep's."""
        return self.random_erasing if row.random_erasing is None else row.random_erasing

    def twin_partner(self, row: RowConfig) -> RowConfig | None:
        """The separable row a ``twin = "standard"`` row is compared with: same model,
        arguments, recipe and training data, no twin; ``None`` when there is none."""
        if row.twin is None:
            return None
        return next(
            (
                other
                for other in self.rows
                if other.twin is None
                and other.model == row.model
                and dict(other.model_kwargs) == dict(row.model_kwargs)
                and other.recipe == row.recipe
                and other.train_images == row.train_images
                and other.random_erasing == row.random_erasing
            ),
            None,
        )


def _latency(check: KeyChecker, table: Mapping[str, Any]) -> LatencyConfig:
    check.known(table, _LATENCY_KEYS, "`latency`")
    defaults = LatencyConfig()
    batch_sizes = table.get("batch_sizes", list(defaults.batch_sizes))
    if (
        not isinstance(batch_sizes, list)
        or not batch_sizes
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes)
    ):
        raise check.error(
            "latency.batch_sizes", "a non-empty list of positive integers", batch_sizes
        )
    return LatencyConfig(
        batch_sizes=tuple(batch_sizes),
        threads=check.integer(
            table, "threads", "latency.", minimum=1, maximum=MAX_THREADS, default=None
        ),
        warmup=check.integer(table, "warmup", "latency.", minimum=1, default=defaults.warmup),
        repeats=check.integer(table, "repeats", "latency.", minimum=1, default=defaults.repeats),
        max_time_s=(
            check.number(table, "max_time_s", "latency.")
            if "max_time_s" in table
            else defaults.max_time_s
        ),
    )


def _row(
    check: KeyChecker, row: Any, index: int, base: TrainConfig, default_seeds: int
) -> RowConfig:
    where = f"row[{index}]."
    if not isinstance(row, dict):
        raise check.error(f"row[{index}]", "a table ([[row]])", row)
    check.known(row, _ROW_KEYS, f"`row[{index}]` (rows counted from 1)")
    for key in ("name", "model"):
        if key not in row:
            raise ValueError(
                f"{check.path}: row[{index}] (rows counted from 1) has no `{key}`; every "
                "[[row]] needs `name` and `model`."
            )
    name = check.string(row, "name", where)
    if not _NAME.fullmatch(name):
        raise check.error(
            f"{where}name", "letters, digits, '_', '.' or '-' (it names a folder)", name
        )
    model = check.string(row, "model", where)
    twin = row.get("twin")
    if twin is not None and twin not in TWIN_KINDS:
        raise check.error(f"{where}twin", f"one of {TWIN_KINDS} or no key", twin)
    overrides = check.table(row, "recipe", where)
    return RowConfig(
        name=name,
        model=model,
        model_kwargs=model_kwargs_from(check, row, where, model),
        twin=twin,
        seeds=check.integer(
            row, "seeds", where, minimum=1, maximum=MAX_SEEDS, default=default_seeds
        ),
        train_images=check.integer(row, "train_images", where, minimum=1, default=None),
        recipe=recipe_from(check, overrides, f"{where}recipe.", base),
        overrides=overrides,
        note=check.string(row, "note", where) if "note" in row else "",
        random_erasing=(
            check.fraction(row, "random_erasing", where) if "random_erasing" in row else None
        ),
    )


def load_config(path: str | Path) -> ReproduceConfig:
    """Read and validate a sweep config (TOML; see this module's docstring for the layout).

    Args:
        path: The ``.toml`` file.

    Returns:
        The validated :class:`ReproduceConfig`; its ``name`` is the file's stem.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not TOML, or a key is unknown, missing or of the wrong value;
            the message names the file and the key.

    Example:
        >>> config = load_config("configs/reproduce_compact.toml")  # doctest: +SKIP
        >>> [row.name for row in config.rows][:2]  # doctest: +SKIP
        ['mobilenet_v1_025', 'conv_mobilenet_v1_025']
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(
            f"Config file {source} not found; pass the path of a sweep config such as "
            "configs/reproduce_compact.toml."
        )
    if tomllib is None:
        raise ValueError(
            f"Cannot read {source}: reading TOML on Python < 3.11 needs the `tomli` package "
            "(pip install tomli), or use Python >= 3.11."
        )
    text = source.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source} is not valid TOML: {err}. Fix the file.") from err
    check = KeyChecker(source)
    check.known(raw, _TOP_KEYS, "")
    if "data" not in raw:
        raise ValueError(f'{source}: key `data` is missing; set it, e.g. data = "fashion-mnist".')
    recipe = recipe_from(check, check.table(raw, "recipe", ""), "recipe.", TrainConfig())
    rows_raw = raw.get("row", [])
    if not isinstance(rows_raw, list) or not rows_raw:
        raise check.error("row", "at least one [[row]] table", rows_raw)
    rows = tuple(_row(check, row, i, recipe, 1) for i, row in enumerate(rows_raw, start=1))
    seen: set[str] = set()
    for i, row in enumerate(rows, start=1):
        if row.name in seen:
            raise check.error(f"row[{i}].name", "a name no other row has", row.name)
        seen.add(row.name)
    augment = check.boolean(raw, "augment", "") if "augment" in raw else True
    erasing = check.fraction(raw, "random_erasing", "") if "random_erasing" in raw else 0.0
    for where, p in [("", erasing)] + [
        (f"row[{i}].", row.random_erasing or 0.0) for i, row in enumerate(rows, start=1)
    ]:
        if p and not augment:
            raise check.error(
                f"{where}random_erasing", "0 when augment = false (it follows the crop)", p
            )
    device = check.string(raw, "device", "") if "device" in raw else "cpu"
    if not _DEVICE.fullmatch(device):
        raise check.error("device", "'cpu', 'cuda' or 'cuda:N'", device)
    return ReproduceConfig(
        name=source.stem,
        path=source,
        text=text,
        data=check.string(raw, "data", ""),
        threads=check.integer(raw, "threads", "", minimum=1, maximum=MAX_THREADS, default=1),
        augment=augment,
        test_images=check.integer(raw, "test_images", "", minimum=1, default=None),
        recipe=recipe,
        latency=_latency(check, check.table(raw, "latency", "")),
        rows=rows,
        random_erasing=erasing,
        jobs=check.integer(raw, "jobs", "", minimum=1, maximum=MAX_THREADS, default=1),
        device=device,
        target_accuracy=(
            check.fraction(raw, "target_accuracy", "") if "target_accuracy" in raw else None
        ),
        image_size=check.integer(raw, "image_size", "", minimum=1, maximum=MAX_SIDE, default=None),
    )
