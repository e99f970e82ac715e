"""The results table as Markdown: what the numbers mean, the rows, the twin pairs, notes and
references.

:func:`render_markdown` reads a :class:`~sepconv.reproduce.table.ResultsTable`;
:func:`sepconv.reproduce.results.write_results` writes the text as ``results.md``.
"""

from __future__ import annotations

import statistics

from sepconv.bench.output import markdown_table
from sepconv.reproduce.speed import format_count, format_reached, speed_notes
from sepconv.reproduce.table import FASHION_MNIST_BENCHMARK, ResultsTable
from sepconv.reproduce.twins import HOWARD_TABLE_4

__all__ = ["render_markdown"]


def render_markdown(table: ResultsTable, header: str) -> str:
    """``table`` as Markdown under ``header`` (command, machine, versions).

    Example:
        >>> text = render_markdown(summarize(config, results, costs, latency,
        ...                                  input_shape=(1, 28, 28)), "header")  # doctest: +SKIP
    """
    batches = sorted({b for row in table.rows for b in row.latency})
    lines = _preamble(table, header)
    lines.append(_rows_table(table, batches))
    if table.twins:
        lines += _twins_section(table, batches)
    notes = [f"- `{row.name}`: {row.note}" for row in table.rows if row.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += [
        "",
        "## References",
        "",
        f"- {FASHION_MNIST_BENCHMARK}",
        "- ImageNet top-1 column: the published figure of each row's architecture at its "
        "width (`mobilenet_v1` at `width_mult=0.25` is `mobilenet_v1_025`; `sepconv zoo` "
        "lists the source of each); `-` for a twin or a width nobody published.",
    ]
    return "\n".join(lines) + "\n"


def _preamble(table: ResultsTable, header: str) -> list[str]:
    """Title, header and what every column measures, ending in one blank line."""
    threads = {t.threads for row in table.rows for t in row.latency.values()}
    shape = "x".join(str(s) for s in table.input_shape)
    recipe = ", ".join(f"{k}={v}" for k, v in table.recipe.items() if k != "seed")
    lines = [
        f"# {table.name}: accuracy against cost on {table.data}",
        "",
        header,
        "",
        f"Recipe of every row (a row's `changes` column says where it departs): `{recipe}`; "
        f"augmentation: {_augmentation(table)}. "
        "Test accuracy is the last epoch's (no selection on the test set), on "
        f"{'all' if table.test_images is None else f'the first {table.test_images}'} test "
        "images; mean, sample standard deviation and min-max over seeds. Params and MACs: "
        f"`sepconv.analyze` at 1x{shape} (1 MAC = one multiply-add; conv + linear). "
        "Latency: median per call of `sepconv.bench.timing.measure`, eval mode, fp32, CPU, "
        f"{'/'.join(map(str, sorted(threads))) or '-'} thread(s), measured for all rows in "
        f"one process after training, {_latency_weights(table)}",
        "",
    ]
    lines[-1:-1] = speed_notes(table.gpu, table.target_accuracy)
    return lines


def _rows_table(table: ResultsTable, batches: list[int]) -> str:
    """One line per row: cost, latency per batch size, accuracy over seeds, training time."""
    target = table.target_accuracy
    headers = [
        "row",
        "convs",
        "params",
        "MACs",
        *(f"latency b{b} (ms)" for b in batches),
        *(["GPU img/s b256"] if table.gpu else []),
        "test acc % (mean ± std)",
        "min-max",
        "seeds",
        "train min/run",
        *([f"s to {100 * target:g}%"] if target is not None else []),
        "changes",
        "ImageNet top-1 (published)",
    ]
    body = []
    for row in table.rows:
        mean, std, rng = row.acc_mean, row.acc_std, row.acc_range
        changes = ", ".join(f"{k}={v}" for k, v in row.changes.items()) or "-"
        if row.twin:
            changes = f"{row.twin} twin" + ("" if changes == "-" else f"; {changes}")
        published = row.published
        body.append(
            [
                row.name,
                row.kind,
                f"{row.cost.params:,}",
                f"{row.cost.macs / 1e6:,.1f}M",
                *(f"{row.latency[b].median_ms:.2f}" if b in row.latency else "-" for b in batches),
                *([format_count(row.gpu_images_per_s)] if table.gpu else []),
                "not run"
                if mean is None
                else f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}"),
                "-" if rng is None else f"{rng[0]:.2f}-{rng[1]:.2f}",
                str(len(row.seeds)),
                f"{statistics.fmean(row.train_time_s) / 60:.1f}" if row.train_time_s else "-",
                *([format_reached(row.time_to_target_s)] if target is not None else []),
                changes,
                "-" if published is None else f"{published.top1:.1f}",
            ]
        )
    return markdown_table(headers, body)


def _twins_section(table: ResultsTable, batches: list[int]) -> list[str]:
    """The standard-against-separable section: a blank line, its heading, what a twin is and
    one line per pair."""
    lines = ["", "## Standard convolutions against depthwise separable ones", ""]
    lines.append(
        "The same network built twice: every depthwise + pointwise pair replaced by one "
        "standard conv of the same kernel, stride and channels (`standard_twin`), "
        "everything else equal. " + HOWARD_TABLE_4
    )
    lines.append("")
    twin_headers = [
        "separable",
        "standard",
        "params ratio",
        "MACs ratio",
        *(f"latency ratio b{b}" for b in batches),
        "acc gap (points)",
        "cost",
        "accuracy",
    ]
    twin_body = []
    for twin in table.twins:
        gap = twin.acc_gap
        twin_body.append(
            [
                twin.separable.name,
                twin.standard.name,
                f"{twin.param_ratio:.2f}x",
                f"{twin.mac_ratio:.2f}x",
                *("-" if (r := twin.latency_ratio(b)) is None else f"{r:.2f}x" for b in batches),
                "-" if gap is None else f"{gap:+.2f}",
                twin.cost_verdict,
                twin.accuracy_verdict,
            ]
        )
    lines.append(markdown_table(twin_headers, twin_body))
    return lines


def _augmentation(table: ResultsTable) -> str:
    """The training augmentation in words."""
    if not table.augment:
        return "none"
    erasing = (
        f" + random erasing (p={table.random_erasing}, Zhong et al. 2020)"
        if table.random_erasing
        else ""
    )
    return "random crop + horizontal flip" + erasing


def _latency_weights(table: ResultsTable) -> str:
    """Which weights the latency column was timed on, row by row when they differ."""
    timed = [row for row in table.rows if row.latency]
    untrained = [f"`{row.name}`" for row in timed if not row.latency_trained]
    stand_in = (
        "initial weights with BatchNorm statistics measured on training images "
        "(`sepconv.reproduce.latency_model`), the same shapes and operations"
    )
    if not untrained:
        return "on the trained weights of one run per row."
    if len(untrained) == len(timed):
        return (
            f"on {stand_in}: the run folders keep no weights (a results folder keeps "
            "results and logs)."
        )
    return (
        f"on the trained weights of one run per row, except {', '.join(untrained)}, whose "
        f"run folders keep no weights (a results folder keeps results and logs): on {stand_in}."
    )
