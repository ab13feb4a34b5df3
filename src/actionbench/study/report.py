"""Comparison reports from run results: CSV and Markdown tables, figures, one self-contained HTML page.

Figures follow the paper's Figures 1-2: accuracy against GFLOPs, colour = temporal design, marker = backbone,
filled = with temporal pooling, hollow = without; one panel per dataset.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

COLUMNS = ("dataset", "model", "frames", "temporal_pooling", "clip_top1", "video_top1", "paper_gflops", "params",
           "sampling")
DESIGN_COLOURS = {"tsn": "#7f7f7f", "tsm": "#1f77b4", "tam": "#d62728", "tconv": "#9467bd", "i3d": "#2ca02c",
                  "s3d": "#ff7f0e", "nln": "#8c564b", "slowfast": "#e377c2"}
BACKBONE_MARKERS = {"resnet18": "o", "resnet34": "v", "resnet50": "s", "resnet101": "D", "inception_v1": "^"}


def split_name(model: str) -> tuple[str, str]:
    """`tam_resnet50` -> (`tam`, `resnet50`)."""
    design, _, backbone = model.partition("_")
    return design, backbone


def write_csv(results: list[dict], path: Path) -> None:
    extra = sorted({k for r in results for k in r} - set(COLUMNS))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *extra])
        writer.writeheader()
        for row in results:
            writer.writerow({k: row.get(k, "") for k in (*COLUMNS, *extra)})


def _fmt(value, digits: int = 1) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "model", "frames", "temporal pooling", "sampling", "clip top-1 (%)", "video top-1 (%)",
              "GFLOPs", "params (M)"]
    has_speed = any("throughput_inference" in r for r in results)
    if has_speed:
        header.append("clips/s (infer)")
    rows = []
    for r in sorted(results, key=lambda r: (r.get("dataset", ""), r["model"], r.get("frames", 0),
                                            r.get("temporal_pooling", False))):
        row = [r.get("dataset", ""), r["model"], _fmt(r.get("frames")), _fmt(bool(r.get("temporal_pooling"))),
               r.get("sampling", ""), _fmt(r.get("clip_top1")), _fmt(r.get("video_top1")),
               _fmt(r.get("paper_gflops"), 3 if r.get("paper_gflops", 1) < 1 else 1),
               f"{r.get('params', 0) / 1e6:.2f}"]
        if has_speed:
            row.append(_fmt(r.get("throughput_inference")))
        rows.append(row)
    return header, rows


def markdown_table(results: list[dict]) -> str:
    header, rows = table_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_cost(results: list[dict], out_dir: Path, metric: str = "video_top1") -> list[Path]:
    """One figure, a panel per dataset; returns the PNG and SVG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    datasets = sorted({r.get("dataset", "") for r in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for r in (r for r in results if r.get("dataset", "") == dataset):
            design, backbone = split_name(r["model"])
            colour = DESIGN_COLOURS.get(design, "black")
            pooled = bool(r.get("temporal_pooling"))
            ax.scatter(r.get("paper_gflops", 0), r.get(metric, 0), s=70, marker=BACKBONE_MARKERS.get(backbone, "o"),
                       facecolors=colour if pooled else "none", edgecolors=colour, linewidths=1.8)
            ax.annotate(f"{design} f{r.get('frames')}", (r.get("paper_gflops", 0), r.get(metric, 0)), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_title(dataset)
        ax.xaxis.set_major_locator(MaxNLocator(5))  # a few readable ticks, even at 0.001 GFLOPs apart
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.set_xlabel("GFLOPs (conv multiply-adds)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.grid(alpha=0.3)
    designs = sorted({split_name(r["model"])[0] for r in results})
    backbones = sorted({split_name(r["model"])[1] for r in results})
    handles = [Line2D([], [], color=DESIGN_COLOURS.get(d, "black"), marker="o", linestyle="", label=d) for d in designs]
    handles += [Line2D([], [], color="black", marker=BACKBONE_MARKERS.get(b, "o"), linestyle="", fillstyle="none",
                       label=b) for b in backbones]
    handles += [Line2D([], [], color="black", marker="o", linestyle="", label="with temporal pooling"),
                Line2D([], [], color="black", marker="o", linestyle="", fillstyle="none", label="without")]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    paths = [out_dir / f"accuracy_vs_gflops.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


def html_page(title: str, paragraphs: list[str], results: list[dict], figure_png: Path) -> str:
    header, rows = table_rows(results)
    image = base64.b64encode(figure_png.read_bytes()).decode()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    text = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:nth-child(-n+2) {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{text}
<h2>Accuracy against cost</h2>
<img alt="top-1 accuracy against GFLOPs" src="data:image/png;base64,{image}">
<h2>Results</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p><small>GFLOPs: convolution multiply-adds of one clip (the paper's convention). Temporal pooling is stated for every
run. Generated by actionbench.</small></p>
</body></html>
"""


def write_report(results: list[dict], out_dir: str | Path, title: str = "actionbench study",
                 paragraphs: list[str] | None = None) -> dict[str, Path]:
    """Write results.csv, results.md, accuracy_vs_gflops.{png,svg} and a self-contained report.html."""
    if not results:
        raise ValueError("no results to report: did any run finish (results.json)?")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    same = sorted({r.get("test_list", "") for r in results if r.get("val_is_test")})
    if same:
        paragraphs = [*(paragraphs or []), f"Warning: best.pt was chosen on the list that is also the test list "
                      f"({', '.join(same)}); test accuracies of best.pt would be optimistic (the table's come from "
                      "the final weights, but give data.test_list a split of its own)."]
    paths = {"csv": out / "results.csv", "markdown": out / "results.md", "html": out / "report.html"}
    write_csv(results, paths["csv"])
    paths["markdown"].write_text(f"# {title}\n\n" + "".join(f"{p}\n\n" for p in paragraphs or []) +
                                 markdown_table(results))
    png, svg = plot_accuracy_vs_cost(results, out)
    paths.update(png=png, svg=svg)
    paths["html"].write_text(html_page(title, paragraphs or [], results, png))
    return paths


def embedded_image_count(html_text: str) -> int:
    return html_text.count("data:image/png;base64,")

