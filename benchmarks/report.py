"""A static side-by-side report: fastbp against NumPy, PyTorch, TensorFlow and scikit-learn, per
kernel and per training epoch, as PNG plots and a page (HTML, and Markdown for GitHub).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/report.py [--out docs/benchmarks] [--rounds 3]

It runs, one after the other (never two at once), ``compare_kernels.py`` (fastbp's default
backend against NumPy and PyTorch), ``compare_kernels.py --cython`` (the cython backend against
numba and NumPy) and ``compare_training.py`` (one process per contender in turn), each with
``--json``, and draws what they measured. ``--from DIR`` draws again from the JSON files a
previous run left in DIR, without measuring. The page names the CPU, each contender's BLAS and
the library versions, and the commands that produced it.
"""
from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {  # file name: the script and its arguments
    "kernels.json": ["compare_kernels.py"],
    "kernels_cython.json": ["compare_kernels.py", "--cython"],
    "training.json": ["compare_training.py"],
}


def measure(out, rounds):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    for name, (script, *extra) in RUNS.items():
        cmd = [sys.executable, str(HERE / script), *extra, "--rounds", str(rounds), "--json", str(out / name)]
        print("$", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, env=env)
        if done.returncode not in (0, 1):  # (compare_kernels exits 1 when a target is missed: still a result)
            raise SystemExit(f"{script} failed (exit {done.returncode})")


def _kernel_rows(data):
    return [(r["case"], r["baseline"], r["fastbp_s"], r["baseline_s"], r["ratio"]) for r in data["rows"]]


def plot_kernels(rows, title, path):
    """Horizontal bars: the median of paired ratios baseline time / fastbp time per case (> 1:
    fastbp is faster), a line at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{case}\nvs {base}" for case, base, *_ in rows]
    ratios = [r[4] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.2))
    colors = ["#2a7ab0" if v >= 1 else "#c0504d" for v in ratios]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.axvline(1, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    for i, v in enumerate(ratios):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("baseline time / fastbp time (median of paired rounds; > 1: fastbp faster)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(training, path):
    """Grouped bars: median epoch seconds per contender, one group per batch size, and the
    matrix-product floor as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    batches = list(training["batches"])
    contenders = list(training["batches"][batches[0]])
    width = 0.8 / len(contenders)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for k, name in enumerate(contenders):
        med = [float(np.median(training["batches"][b][name])) for b in batches]
        bars = ax.bar(np.arange(len(batches)) + (k - (len(contenders) - 1) / 2) * width, med, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(training["floor_s"], color="black", ls="--", lw=1,
               label=f"matrix-product floor {training['floor_s']:.3f} s")
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("seconds per epoch (median)")
    ax.set_title("One MNIST epoch, 784-128 relu-10 softmax, Adam (one process at a time)", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_rows(training):
    import numpy as np

    rows = []
    for batch, times in training["batches"].items():
        ours = float(np.median(times["fastbp"]))
        for name, ts in times.items():
            med = float(np.median(ts))
            rows.append((batch, name, med, min(ts), med / ours, med / training["floor_s"]))
    return rows


def write_pages(out, kernels, kernels_cython, training, command):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = list(dict.fromkeys(training["environment"] + kernels["environment"] + kernels_cython["environment"]))
    sections = [
        ("Training epoch", "training.png",
         ["batch", "contender", "epoch s (median)", "fastest s", "/ fastbp", "x floor"],
         [(b, n, f"{m:.3f}", f"{f:.3f}", f"{r:.2f}x", f"{x:.2f}x") for b, n, m, f, r, x in training_rows(training)]),
        ("Kernels: fastbp (default backend) against NumPy and PyTorch", "kernels.png",
         ["case", "baseline", "fastbp us", "baseline us", "ratio"],
         [(c, b, f"{o * 1e6:.1f}", f"{t * 1e6:.1f}", f"{r:.2f}x") for c, b, o, t, r in _kernel_rows(kernels)]),
        ("Kernels: the cython backend against numba and NumPy", "kernels_cython.png",
         ["case", "baseline", "cython us", "baseline us", "ratio"],
         [(c, b, f"{o * 1e6:.1f}", f"{t * 1e6:.1f}", f"{r:.2f}x") for c, b, o, t, r in _kernel_rows(kernels_cython)]),
    ]
    intro = (f"Measured {stamp} with `{command}`. Contenders ran one process at a time (epochs) or "
             f"alternately in rounds (kernels), 2 threads each; medians. Ratios above 1 mean fastbp is faster.")
    md = ["# fastbp benchmark report", "", intro, "", *[f"- {line}" for line in env], ""]
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>fastbp benchmark report</title>"
            "<link rel='icon' href='data:,'>",
            "<style>body{font-family:sans-serif;max-width:960px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}</style></head><body>",
            "<h1>fastbp benchmark report</h1>", f"<p>{html.escape(intro)}</p><ul>",
            *[f"<li>{html.escape(line)}</li>" for line in env], "</ul>"]
    for title, image, head, rows in sections:
        md += [f"## {title}", "", f"![{title}]({image})", "", "| " + " | ".join(head) + " |",
               "|" + "---|" * len(head), *["| " + " | ".join(map(str, r)) + " |" for r in rows], ""]
        page += [f"<h2>{html.escape(title)}</h2>", f"<img src='{image}' alt='{html.escape(title)}'>", "<table><tr>",
                 *[f"<th>{html.escape(h)}</th>" for h in head], "</tr>",
                 *["<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows],
                 "</table>"]
    page.append("</body></html>")
    (out / "README.md").write_text("\n".join(md))
    (out / "index.html").write_text("\n".join(page))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--from", dest="source", default=None, help="draw from this folder's JSON, measure nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(args.source) if args.source else out
    if args.source is None:
        measure(out, args.rounds)
    kernels, kernels_cython, training = (json.loads((source / name).read_text()) for name in RUNS)
    plot_kernels(_kernel_rows(kernels), "fastbp (default backend) against NumPy and PyTorch", out / "kernels.png")
    plot_kernels(_kernel_rows(kernels_cython), "the cython backend against numba and NumPy", out / "kernels_cython.png")
    plot_training(training, out / "training.png")
    write_pages(out, kernels, kernels_cython, training, f"python benchmarks/report.py --rounds {args.rounds}")
    print(f"report: {out / 'index.html'} and {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
