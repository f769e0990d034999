"""Rendering a Table S.1 (:class:`diffit_eval.report.table.TableResult`): rich, markdown, LaTeX, CSV.

Each renderer is a function of the table alone; the registry `RENDERERS` names them for
`diffit-eval table --format`. CSV carries the exact values; the others the display strings.
"""

from __future__ import annotations

from collections.abc import Callable

from diffit_eval.errors import UserError
from diffit_eval.report.table import Column, TableResult

# ---------------------------------------------------------------------------------------------
# Renderers: name -> function(TableResult) -> str


def render_csv(t: TableResult) -> str:
    return t.exact.to_csv(index=False, lineterminator="\n")


def _flat_headers(t: TableResult) -> list[str]:
    return [f"{c.group} {c.header}".strip() for c in t.columns]


def render_md(t: TableResult) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    heads = _flat_headers(t)
    aligns = ["---" if c.group == "" else "---:" for c in t.columns]
    lines = [f"**{t.title}**", "", "| " + " | ".join(map(esc, heads)) + " |", "|" + "|".join(aligns) + "|"]
    for row in t.display.itertuples(index=False):
        lines.append("| " + " | ".join(esc(str(x)) for x in row) + " |")
    lines.append("")
    lines.extend(f"{esc(n)}  " for n in t.notes)
    return "\n".join(lines).rstrip() + "\n"


_LATEX_SUBS = [
    ("\\", r"\textbackslash{}"),
    ("&", r"\&"),
    ("%", r"\%"),
    ("_", r"\_"),
    ("#", r"\#"),
    ("$", r"\$"),
    ("{", r"\{"),
    ("}", r"\}"),
    ("~", r"\textasciitilde{}"),
    ("^", r"\^{}"),
    ("Δ", r"$\Delta$"),
    ("−", "--"),
    ("×", r"$\times$"),
    ("↓", r"$\downarrow$"),
    ("↑", r"$\uparrow$"),
]


def latex_escape(s: str) -> str:
    out = []
    for ch in s:
        out.append(next((rep for src, rep in _LATEX_SUBS if src == ch), ch))
    return "".join(out)


def render_latex(t: TableResult) -> str:
    label_cols = [c for c in t.columns if not c.group]
    groups: list[tuple[str, int]] = []  # (spanning header, width) of the metric columns
    for c in t.columns[len(label_cols) :]:
        if groups and groups[-1][0] == c.group:
            groups[-1] = (c.group, groups[-1][1] + 1)
        else:
            groups.append((c.group, 1))
    span = [""] * len(label_cols)
    rules, first = [], len(label_cols) + 1
    for name, n in groups:
        span.append(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(name)}}}")
        rules.append(rf"\cmidrule(lr){{{first}-{first + n - 1}}}")
        first += n
    spec = "l" * len(label_cols) + "r" * (len(t.columns) - len(label_cols))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(t.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(span) + r" \\",
        "".join(rules),
        " & ".join(latex_escape(c.header) for c in t.columns) + r" \\",
        r"\midrule",
    ]
    for row in t.display.itertuples(index=False):
        lines.append(" & ".join(latex_escape(str(x)) for x in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(latex_escape(n) for n in t.notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _rich_table(
    t: TableResult, columns: list[Column], title: str, caption: str | None, grouped: bool, compact: bool = False
):
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        caption=caption,
        caption_justify="left",
        title_justify="left",
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
    )
    for c in columns:
        header = f"{c.group}\n{c.header}" if c.group and grouped else c.header
        if c.group:  # numbers never wrap
            table.add_column(header, justify="right", no_wrap=True)
        else:  # names wrap at word boundaries but never shrink to nothing
            longest_word = max((len(w) for v in t.display[c.key] for w in str(v).split()), default=4)
            table.add_column(
                header, justify="left", min_width=min(max(longest_word, len(c.header)), 14), overflow="fold"
            )
    keys = [c.key for c in columns]
    for row in t.display[keys].itertuples(index=False):
        table.add_row(*(str(x) for x in row), style="bold" if any("measured" in str(x) for x in row) else None)
    return table


def _layouts(t: TableResult, caption: str | None):
    """Ever narrower renderings: the whole table; one table per resolution group; the same without
    vertical rules; then without the derived ΔFID column. Row names are in every one of them."""
    yield [_rich_table(t, t.columns, t.title, caption, grouped=True)]
    labels = [c for c in t.columns if not c.group]
    groups = list(dict.fromkeys(c.group for c in t.columns if c.group))
    for compact, drop in ((False, ()), (True, ()), (True, ("ΔFID",))):
        kept = [c for c in t.columns if c.group and c.header not in drop]
        note = (caption or "") + (
            "\nΔFID is left out at this terminal width; widen it or use --format md." if drop else ""
        )
        yield [
            _rich_table(
                t,
                labels + [c for c in kept if c.group == g],
                f"{t.title}: {g}",
                (note.strip() or None) if i == len(groups) - 1 else None,
                grouped=False,
                compact=compact,
            )
            for i, g in enumerate(groups)
        ]


def render_rich(t: TableResult, width: int | None = None) -> str:
    """A rich table at the terminal's width (:func:`diffit_eval.console.width`: $COLUMNS, the
    terminal's, or 200 off a terminal, where rich would assume 80).

    The first layout of :func:`_layouts` that fits is printed, so no column is squeezed until the
    row names vanish (at 80 columns: ImageNet-256, then ImageNet-512, each with Model and Source).
    """
    from rich.console import Console

    from diffit_eval.console import width as printed_width

    if width is None:
        width = printed_width()
    console = Console(width=width)
    measure = Console(width=10_000)  # natural widths, unconstrained
    caption = "\n".join(t.notes) or None
    for tables in _layouts(t, caption):
        if all(measure.measure(x).minimum <= width for x in tables):  # names may wrap, numbers may not
            break
        fallback = tables
    else:
        tables = fallback
    with console.capture() as cap:
        for table in tables:
            console.print(table)
    return cap.get()


RENDERERS: dict[str, Callable[[TableResult], str]] = {
    "rich": render_rich,
    "md": render_md,
    "csv": render_csv,
    "latex": render_latex,
}


def render(t: TableResult, fmt: str = "rich") -> str:
    if fmt not in RENDERERS:
        raise UserError(f"unknown --format {fmt!r}; choose one of {', '.join(RENDERERS)}")
    return RENDERERS[fmt](t)
