"""Comparison reports from run results: CSV and Markdown tables, figures, one self-contained HTML page.

Runs repeated over seeds are one row (mean, standard deviation and each seed's value; study/compare.py), every
accuracy is shown with its 95 % interval over the test videos, every pair of rows of a dataset is tested on the same
videos (`comparisons.csv`), and the text states a difference only when it is significant. Figures follow the
paper's Figures 1-2: accuracy against GFLOPs, colour = temporal design, marker = backbone, filled = with temporal
pooling, hollow = without; one panel per dataset, with error bars and the chance level.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

from actionbench.study.compare import compare_groups, findings, group_results
from actionbench.study.figures import pyplot, save_figure
from actionbench.study.per_class import class_differences, confused_pairs, plot_class_differences

COLUMNS = ("dataset", "label", "model", "frames", "temporal_pooling", "clip_top1", "video_top1", "video_top1_std",
           "video_top1_ci", "runs", "seeds", "video_top1_runs", "paper_gflops", "params", "sampling")
DESIGN_COLOURS = {"tsn": "#7f7f7f", "tsm": "#1f77b4", "tam": "#d62728", "tconv": "#9467bd", "i3d": "#2ca02c",
                  "s3d": "#ff7f0e", "nln": "#8c564b", "slowfast": "#e377c2", "i3d3x1": "#17becf"}
BACKBONE_MARKERS = {"resnet18": "o", "resnet34": "v", "resnet50": "s", "resnet101": "D", "inception_v1": "^"}


def split_name(model: str) -> tuple[str, str]:
    """`tam_resnet50` -> (`tam`, `resnet50`)."""
    design, _, backbone = model.partition("_")
    return design, backbone


def write_csv(rows: list[dict], path: Path) -> None:
    extra = sorted({k for r in rows for k in r} - set(COLUMNS) - {"output_dirs"})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *extra])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k, "")) for k in (*COLUMNS, *extra)})


def _cell(value):
    if isinstance(value, list):
        return ";".join("" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
    return round(value, 3) if isinstance(value, float) else value


COMPARISON_FIELDS = ["dataset", "a", "b", "a_video_top1", "b_video_top1", "difference", "ci_low", "ci_high", "p",
                     "p_adjusted", "significant", "family", "mdd", "seed_aware", "seeds_a", "seeds_b", "videos", "se",
                     "df", "method"]


def write_rows(rows: list[dict], path: Path, fields: list[str] | None = None) -> None:
    """A CSV of `rows` with `fields` (default: the first row's keys, in order)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value, digits: int = 1) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def _accuracy(row: dict) -> str:
    """`85.0 [76.2, 92.5]`, or with several seeds `80.4 ± 3.1 [74.0, 86.2] (3 seeds)`."""
    text = _fmt(row.get("video_top1"))
    if row.get("runs", 1) > 1:
        text += f" ± {row['video_top1_std']:.1f}"
    interval = row.get("video_top1_ci")
    if interval and None not in interval:
        text += f" [{interval[0]:.1f}, {interval[1]:.1f}]"
    if row.get("runs", 1) > 1:
        text += f" ({row['runs']} seeds)"
    return text


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    grouped = results if results and "runs" in results[0] else group_results(results)
    header = ["dataset", "run", "frames", "temporal pooling", "sampling", "clip top-1 (%)",
              "video top-1 (%) [95 % interval]", "GFLOPs", "params (M)"]
    has_speed = any("throughput_inference" in r for r in grouped)
    if has_speed:
        header.append("clips/s (infer)")
    rows = []
    for r in sorted(grouped, key=lambda r: (r.get("dataset", ""), r["model"], r.get("frames", 0),
                                            r.get("temporal_pooling", False), r.get("label", ""))):
        row = [r.get("dataset", ""), r.get("label", r["model"]), _fmt(r.get("frames")),
               _fmt(bool(r.get("temporal_pooling"))), r.get("sampling", ""), _fmt(r.get("clip_top1")), _accuracy(r),
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


def plot_accuracy_vs_cost(rows: list[dict], out_dir: Path, metric: str = "video_top1") -> list[Path]:
    """One figure, a panel per dataset, error bars (the 95 % interval over test videos; with several seeds the
    standard deviation over them too) and the chance level; returns the PNG and SVG paths."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    datasets = sorted({r.get("dataset", "") for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        members = [r for r in rows if r.get("dataset", "") == dataset]
        lows, highs, xs = [], [], []
        for r in members:
            design, backbone = split_name(r["model"])
            colour = DESIGN_COLOURS.get(design, "black")
            x, y = r.get("paper_gflops", 0), r.get(metric, 0)
            interval = r.get(f"{metric}_ci") or [y, y]
            low, high = (y, y) if None in interval else interval
            ax.errorbar(x, y, yerr=[[y - low], [high - y]], color=colour, capsize=3, linewidth=1, zorder=1)
            if r.get("runs", 1) > 1:  # the spread over seeds, thicker and shorter
                ax.errorbar(x, y, yerr=r.get(f"{metric}_std", 0), color=colour, linewidth=4, alpha=0.4, zorder=1)
            ax.scatter(x, y, s=70, marker=BACKBONE_MARKERS.get(backbone, "o"), zorder=2,
                       facecolors=colour if r.get("temporal_pooling") else "white", edgecolors=colour, linewidths=1.8)
            # labelled by what the study sweeps (the row's label), so two runs differing in optim.lr are told apart
            ax.annotate(r.get("label") or f"{design} f{r.get('frames')}", (x, y), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
            xs.append(x)
            lows.append(low)
            highs.append(high)
        chance = 100 / max(int(members[0].get("num_classes") or 0), 1) if members[0].get("num_classes") else None
        if chance:
            ax.axhline(chance, color="#999999", linestyle="--", linewidth=1)
            ax.annotate("chance", (0, chance), xycoords=("axes fraction", "data"), fontsize=7, color="#777777",
                        xytext=(3, 2), textcoords="offset points")
            lows.append(chance)
        # the axis spans the intervals and the chance level: differences look as large as they are, no larger
        span = max(highs) - min(lows)
        ax.set_ylim(max(0, min(lows) - 0.1 * span - 1), min(100, max(highs) + 0.1 * span + 1))
        ax.set_title(dataset)
        if max(xs) - min(xs) < 1e-9:  # one cost for every point: an axis around it, not a magnified 0.0002 span
            ax.set_xlim(min(xs) * 0.5, max(xs) * 1.5 if max(xs) else 1)
        ax.xaxis.set_major_locator(MaxNLocator(5))  # a few readable ticks, even at 0.001 GFLOPs apart
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.set_xlabel("GFLOPs (conv multiply-adds)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%), 95 % interval")
        ax.grid(alpha=0.3)
    designs = sorted({split_name(r["model"])[0] for r in rows})
    backbones = sorted({split_name(r["model"])[1] for r in rows})
    # designs by colour alone (a line): a filled legend marker would read as "with temporal pooling"
    handles = [Line2D([], [], color=DESIGN_COLOURS.get(d, "black"), linewidth=3, label=d) for d in designs]
    handles += [Line2D([], [], color="black", marker=BACKBONE_MARKERS.get(b, "o"), linestyle="", fillstyle="none",
                       label=b) for b in backbones]
    handles += [Line2D([], [], color="black", marker="o", linestyle="", label="with temporal pooling"),
                Line2D([], [], color="black", marker="o", linestyle="", fillstyle="none", label="without"),
                Line2D([], [], color="#999999", linestyle="--", label="chance")]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    return save_figure(fig, out_dir, "accuracy_vs_gflops")


_PROBES = ("reversed", "shuffled", "static")


def add_reliance(rows: list[dict]) -> list[dict]:
    """Each group row's temporal reliance (`actionbench analyze` results in its runs' directories): the mean drop
    per probe over the seeds analysed (`reliance_<probe>`, points) and their number (`reliance_runs`); the rows that
    have one are returned."""
    from actionbench.study.analysis import reliance_of

    analysed = []
    for row in rows:
        found = [r for d in row.get("output_dirs", []) if (r := reliance_of(d))]
        if not found:
            continue
        for probe in _PROBES:
            drops = [next(p["drop"] for p in r["probes"] if p["probe"] == probe) for r in found]
            mean = sum(drops) / len(drops)
            row[f"reliance_{probe}"] = mean
            row[f"reliance_{probe}_sd"] = (sum((d - mean) ** 2 for d in drops) / (len(drops) - 1)) ** 0.5 \
                if len(drops) > 1 else None
        row["reliance_runs"] = len(found)
        analysed.append(row)
    return analysed


def _drop(row: dict, probe: str) -> str:
    """The mean drop over the seeds analysed, ± their standard deviation when several."""
    sd = row.get(f"reliance_{probe}_sd")
    return f"{row[f'reliance_{probe}']:+.1f}" + (f" ± {sd:.1f}" if sd is not None else "")


def reliance_table(rows: list[dict]) -> str:
    lines = ["| dataset | configuration | video top-1 | drop reversed | drop shuffled | drop static | runs |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('dataset', '')} | {r['label']} | {r['video_top1']:.1f} | " + " | ".join(
        _drop(r, p) for p in _PROBES) + f" | {r['reliance_runs']} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_reliance(rows: list[dict], out_dir: Path) -> list[Path]:
    """Temporal reliance against accuracy, a panel per dataset: the drop under reversal (filled) and shuffling
    (open) per configuration, labelled; returns the PNG and SVG paths."""
    plt = pyplot()

    datasets = sorted({r.get("dataset", "") for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for r in (r for r in rows if r.get("dataset", "") == dataset):
            colour = DESIGN_COLOURS.get(split_name(r["model"])[0], "black")
            x = r["video_top1"]
            ax.scatter(x, r["reliance_reversed"], s=70, color=colour, zorder=2)
            ax.scatter(x, r["reliance_shuffled"], s=70, facecolors="white", edgecolors=colour, linewidths=1.8,
                       zorder=2)
            ax.annotate(r["label"], (x, r["reliance_reversed"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ax.axhline(0, color="#999999", linestyle="--", linewidth=1)
        ax.set_title(dataset)
        ax.set_xlabel("video top-1 (%)")
        ax.set_ylabel("accuracy drop (points): reversed (filled), shuffled (open)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_dir, "temporal_reliance")


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: Path, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'


def per_class_section(differences: list[dict], confusions: list[dict], png: Path, shown: int = 2) -> str:
    """The report's per-class section: each comparison's largest gains and losses, and the most confused pairs."""
    picked = []
    for key in dict.fromkeys((d["dataset"], d["a"], d["b"]) for d in differences):
        mine = [d for d in differences if (d["dataset"], d["a"], d["b"]) == key]  # sorted: largest gain first
        picked += mine[:shown] + [d for d in mine[-shown:] if d not in mine[:shown]]
    gains = _html_table(["dataset", "a - b", "class", "videos", "a", "b", "difference [95 %]"], [
        [d["dataset"], f"{d['a']} - {d['b']}", d["class"], d["videos"], f"{d['a_acc']:.1f}", f"{d['b_acc']:.1f}",
         f"{d['difference']:+.1f} [{d['ci_low']:.1f}, {d['ci_high']:.1f}]"] for d in picked])
    confused = _html_table(["dataset", "configuration", "true class", "predicted as", "share of its videos"], [
        [c["dataset"], c["configuration"], c["true"], c["predicted"], f"{c['share']:.1f} % ({c['count']})"]
        for c in confusions])
    return ("<h2>Per class</h2><p>Where each comparison's difference comes from: per class, the accuracy of both "
            "configurations on that class's test videos and their difference with its interval (the comparison's "
            "method; not adjusted for the number of classes: where a difference comes from, not findings). The "
            "largest gains and losses of every comparison; all classes in per_class_differences.csv.</p>"
            f"{_image(png, 'per-class differences')}{gains}"
            "<h3>Most confused class pairs</h3><p>Each configuration's most frequent mistakes over all its seeds "
            f"(confusions.csv).</p>{confused}")


def html_page(title: str, paragraphs: list[str], results: list[dict], figure_png: Path,
              reliance: tuple[list[dict], Path] | None = None, extra: str = "") -> str:
    header, rows = table_rows(results)
    image = base64.b64encode(figure_png.read_bytes()).decode()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    text = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    section = ""
    if reliance:
        analysed, png = reliance
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
                r.get("dataset", ""), r["label"], f"{r['video_top1']:.1f}",
                *(_drop(r, p) for p in _PROBES), str(r["reliance_runs"]))) + "</tr>"
            for r in analysed)
        section = (
            "<h2>Temporal reliance</h2><p>Accuracy drop (points) when the test clips' frames are reversed, "
            "shuffled or static (one frame repeated), mean ± sd over the seeds analysed (actionbench analyze; each "
            "run's temporal_reliance_*.json has the paired intervals). A model that ignores time loses nothing.</p>"
            f'<img alt="temporal reliance against accuracy" src="data:image/png;base64,'
            f'{base64.b64encode(png.read_bytes()).decode()}">'
            "<table><thead><tr><th>dataset</th><th>configuration</th><th>video top-1</th><th>drop reversed</th>"
            f"<th>drop shuffled</th><th>drop static</th><th>runs</th></tr></thead><tbody>{cells}</tbody></table>")
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
{section}
{extra}
<p><small>Video top-1: mean over seeds (± their standard deviation when several), [95 % interval: over the training
seeds and the test videos with several seeds (t, Welch-Satterthwaite), over the test videos with one]; differences
between rows are tested on the same videos in comparisons.csv, each dataset's comparisons one family (Holm-adjusted
p-values; `significant` after adjustment; with one seed, between trained models only). GFLOPs: convolution
multiply-adds of one clip (the paper's convention). Temporal pooling is
stated for every run. Generated by actionbench.</small></p>
</body></html>
"""


def write_report(results: list[dict], out_dir: str | Path, title: str = "actionbench study",
                 paragraphs: list[str] | None = None, baseline: str | None = None) -> dict[str, Path]:
    """Write results.csv (a row per configuration, seeds grouped), comparisons.csv, results.md,
    accuracy_vs_gflops.{png,svg} and a self-contained report.html; the findings paragraphs come from the
    adjusted significance tests (`baseline`: each configuration is compared with that one only)."""
    if not results:
        raise ValueError("no results to report: did any run finish (results.json)?")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = group_results(results)
    comparisons = compare_groups(rows, baseline)
    paragraphs = [*(paragraphs or []), *findings(rows, comparisons)]
    chained = sorted({(r["run"], r["initialised_from"]) for r in results if r.get("initialised_from")})
    if chained:
        paragraphs.append("Initialisation (progression): " + "; ".join(f"{child} from {parent}"
                                                                     for child, parent in chained) + ".")
    same = sorted({r.get("test_list", "") for r in results if r.get("val_is_test")})
    if same:
        paragraphs.append(f"Note: the validation list is also the test list ({', '.join(same)}). The table's "
                          "accuracies are the final weights' (not best.pt's), but settings chosen by looking at them "
                          "are chosen on the test set: give data.test_list a split of its own.")
    paths = {"csv": out / "results.csv", "comparisons": out / "comparisons.csv", "markdown": out / "results.md",
             "html": out / "report.html"}
    write_csv(rows, paths["csv"])
    write_rows(comparisons, paths["comparisons"], COMPARISON_FIELDS)
    analysed = add_reliance(rows)
    markdown = f"# {title}\n\n" + "".join(f"{p}\n\n" for p in paragraphs) + markdown_table(rows)
    reliance = None
    if analysed:
        markdown += "\n## Temporal reliance (accuracy drop, points)\n\n" + reliance_table(analysed)
        reliance_png, reliance_svg = plot_reliance(analysed, out)
        paths.update(reliance_png=reliance_png, reliance_svg=reliance_svg)
        reliance = (analysed, reliance_png)
    paths["markdown"].write_text(markdown)
    extra = ""
    differences = class_differences(rows, comparisons)
    if differences:
        confusions = confused_pairs(rows)
        paths.update(per_class=out / "per_class_differences.csv", confusions=out / "confusions.csv")
        write_rows(differences, paths["per_class"])
        if confusions:
            write_rows(confusions, paths["confusions"])
        paths["per_class_png"], paths["per_class_svg"] = plot_class_differences(differences, out)
        extra = per_class_section(differences, confusions, paths["per_class_png"])
    png, svg = plot_accuracy_vs_cost(rows, out)
    paths.update(png=png, svg=svg)
    paths["html"].write_text(html_page(title, paragraphs, rows, png, reliance, extra))
    return paths


def embedded_image_count(html_text: str) -> int:
    return html_text.count("data:image/png;base64,")

