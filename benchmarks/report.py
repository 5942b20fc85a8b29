"""The README's results table and RESULTS.md's tables, made from the rows of
``benchmarks/results.csv`` (written by bench_cpu.py, bench_sparse.py and
bench_network.py), so that no figure is typed by hand and none can drift from what
the benchmarks printed.

    python benchmarks/report.py            # rewrite both from the newest complete runs
    python benchmarks/report.py --check    # exit 1 if either differs (tests/test_report.py)

The rows used are those of one commit (``--commit``; by default the newest commit
whose rows hold a complete bench_cpu run): a figure is the geomean over the 16 Fire
layers (or one network's ratio) per run, and a range ``a-b`` spans that commit's runs.
The int8 tables (between their own markers) come from the newest commit with
bench_network's int8 rows, named beside them.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fire_kernels.benchmarking import geomean, read_rows  # noqa: E402
from fire_kernels.models import FIRE_LAYERS  # noqa: E402

RESULTS = Path(__file__).with_name("results.csv")
README = ROOT / "README.md"
RESULTS_MD = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- results:begin (benchmarks/report.py) -->", "<!-- results:end -->"
INT8_BEGIN, INT8_END = "<!-- int8:begin (benchmarks/report.py) -->", "<!-- int8:end -->"
INT8 = ("quantized_network", "onnxruntime_int8", "torch_int8")
NETWORKS = ("squeezenet1_1", "squeezenet1_0")
BATCHES = ("1", "16")


class Runs:
    """seconds[run_id][(workload, batch, sparsity, structure)][candidate] of one commit."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.seconds: dict = defaultdict(lambda: defaultdict(dict))
        self.rows = rows
        for r in rows:
            if r["metric"] == "seconds":
                key = (r["workload"], r["batch"], r["sparsity"], r["structure"])
                self.seconds[r["run_id"]][key][r["candidate"]] = float(r["value"])

    def ratios(self, base: str, cand: str, batch: str, *, workloads=tuple(FIRE_LAYERS),
               sparsity: str = "0", structure: str = "dense") -> list[float]:
        """Per run that measured them all: geomean over ``workloads`` of base time /
        candidate time (``cand`` may be "best_fused": the faster fused layout)."""
        out = []
        for run in self.seconds.values():
            keys = [(w, batch, sparsity, structure) for w in workloads]
            if all(k in run and base in run[k] and _time(run[k], cand) for k in keys):
                out.append(geomean(run[k][base] / _time(run[k], cand) for k in keys))
        return out


def _time(times: dict[str, float], cand: str) -> float | None:
    if cand == "best_fused":
        fused = [times[n] for n in ("fused_nchw", "fused_cl") if n in times]
        return min(fused) if fused else None
    return times.get(cand)


def _span(values: list[float]) -> str:
    if not values:
        return "not measured"
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}x"


def newest_complete_commit(rows: list[dict[str, str]]) -> str:
    """The newest clean commit with a bench_cpu run over all 16 layers."""
    complete = []
    for r in rows:
        if r["benchmark"] == "bench_cpu" and not r["commit"].endswith("-dirty"):
            complete.append((r["run_id"], r["commit"]))
    for _, commit in sorted(complete, reverse=True):
        runs = Runs([r for r in rows if r["commit"] == commit and r["benchmark"] == "bench_cpu"])
        if runs.ratios("eager_nchw", "fused_nchw", "1"):
            return commit
    raise SystemExit(f"{RESULTS} holds no complete bench_cpu run of a committed state: "
                     "run python benchmarks/bench_cpu.py first")


def readme_table(rows: list[dict[str, str]], commit: str) -> str:
    runs = Runs(rows)
    machines = sorted({(r["machine"], r["isa"], r["threads"], r["torch"]) for r in rows})
    dates = sorted({r["date"] for r in rows})
    counts = {b: len({r["run_id"] for r in rows if r["benchmark"] == b})
              for b in ("bench_cpu", "bench_sparse", "bench_network")}
    lines = [
        ", ".join(f"{m}, {isa}, {t} threads, torch {v}" for m, isa, t, v in machines)
        + f"; {dates[0]}{' to ' + dates[-1] if len(dates) > 1 else ''}; commit {commit}; "
        f"runs of `benchmarks/bench_cpu.py` ({counts['bench_cpu']}), `bench_sparse.py` "
        f"({counts['bench_sparse']}) and `bench_network.py` ({counts['bench_network']}). "
        "Ratios of the baseline's time to ours on the same weights; per layer, geomeans over "
        "SqueezeNet 1.0's and 1.1's 16 Fire layers; a range spans the runs:",
        "",
        "| | batch 1 | batch 16 |",
        "|---|---|---|",
    ]
    net = ("squeezenet1_1",)
    table = [
        ("dense fused Fire vs eager NCHW", dict(base="eager_nchw", cand="fused_nchw")),
        ("dense fused Fire, channels-last, vs eager channels-last",
         dict(base="eager_cl", cand="fused_cl")),
        ("dense fused Fire (best layout) vs ONNX Runtime",
         dict(base="onnxruntime", cand="best_fused")),
        ("SqueezeNet 1.1, `fuse_network` vs ONNX Runtime (NCHW input)",
         dict(base="onnxruntime", cand="fused_network", workloads=net)),
        ("SqueezeNet 1.0, `fuse_network` vs ONNX Runtime",
         dict(base="onnxruntime", cand="fused_network", workloads=("squeezenet1_0",))),
        ("SqueezeNet 1.1, `fuse_network` vs eager channels-last",
         dict(base="eager_cl", cand="fused_network", workloads=net)),
        ("90 % pruned (unstructured), fused sparse vs eager",
         dict(base="eager_nchw", cand="sparse_nchw", sparsity="90", structure="unstructured")),
        ("90 % pruned, blocks of 4",
         dict(base="eager_nchw", cand="sparse_nchw", sparsity="90", structure="block4")),
        ("SqueezeNet 1.1 pruned 90 % (all but the stem), `fuse_network` vs ONNX Runtime",
         dict(base="onnxruntime", cand="fused_network", workloads=net, sparsity="90",
              structure="unstructured")),
        ("SqueezeNet 1.0 pruned 90 %, `fuse_network` vs ONNX Runtime",
         dict(base="onnxruntime", cand="fused_network", workloads=("squeezenet1_0",),
              sparsity="90", structure="unstructured")),
    ]
    for label, spec in table:
        cells = [_span(runs.ratios(batch=b, **spec)) for b in BATCHES]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _medians(runs: Runs, keys) -> dict:
    """key -> candidate -> median seconds over the runs that measured it."""
    per_key = {k: defaultdict(list) for k in keys}
    for run in runs.seconds.values():
        for k in keys:
            for cand, t in run.get(k, {}).items():
                per_key[k][cand].append(t)
    return {k: {c: sorted(v)[len(v) // 2] for c, v in cands.items()} for k, cands in per_key.items()}


def _table(title: str, keys, medians, cands, ratios) -> list[str]:
    """A markdown table: per key, each candidate's median ms and the given ratios
    (label -> (baseline, candidate))."""
    cands = [c for c in cands if any(c in medians[k] for k in keys)]
    if not cands:
        return []
    out = [title, "", "| workload | batch | " + " | ".join(f"{c} ms" for c in cands)
           + "".join(f" | {label}" for label in ratios) + " |",
           "|---|---|" + "---|" * (len(cands) + len(ratios))]
    for k in keys:
        med = medians[k]
        if not med:
            continue
        cells = [f"{med[c] * 1e3:.3f}" if c in med else "" for c in cands]
        for base, cand in ratios.values():
            b, c = med.get(base), _time(med, cand)
            cells.append(f"{b / c:.2f}x" if b and c else "")
        out.append(f"| {k[0]} | {k[1]} | " + " | ".join(cells) + " |")
    return out + [""]


def result_tables(rows: list[dict[str, str]]) -> str:
    """RESULTS.md's tables: every layer and network of bench_cpu, the whole networks
    of bench_network, and bench_sparse's geomeans per sparsity."""
    out: list[str] = []
    cpu = Runs([r for r in rows if r["benchmark"] == "bench_cpu"])
    for batch in BATCHES:
        keys = [(w, batch, "0", "dense") for w in (*FIRE_LAYERS, "squeezenet1_1", "squeezenet1_0")]
        out += _table(
            f"Dense, per layer and network (Fires fused, the rest eager), batch {batch}: "
            "median ms over the runs; ratios = baseline time / fused time.",
            keys, _medians(cpu, keys),
            ("fused_nchw", "fused_cl", "eager_nchw", "eager_cl", "compile", "onnxruntime"),
            {"NCHW vs eager": ("eager_nchw", "fused_nchw"),
             "CL vs eager CL": ("eager_cl", "fused_cl"),
             "best fused vs ONNX Runtime": ("onnxruntime", "best_fused")},
        )
    net = Runs([r for r in rows if r["benchmark"] == "bench_network"])
    keys = [(w, b, sp, st) for w in ("squeezenet1_1", "squeezenet1_0") for b in BATCHES
            for sp, st in (("0", "dense"), ("90", "unstructured"), ("90", "block4"))]
    medians = _medians(net, keys)
    for pruning in ("dense", "unstructured", "block4"):
        sel = [k for k in keys if k[3] == pruning]
        out += _table(
            f"Whole networks from an NCHW input, weights {pruning}"
            + ("" if pruning == "dense" else " (90 % pruned, every convolution but the stem)")
            + ": median ms; ratios = baseline time / fuse_network's.",
            sel, medians,
            ("fused_network", "fused_cl", "eager_nchw", "eager_cl", "compile_freeze",
             "onnxruntime"),
            {"vs ONNX Runtime": ("onnxruntime", "fused_network"),
             "vs eager CL": ("eager_cl", "fused_network"),
             "vs compile + freezing": ("compile_freeze", "fused_network")},
        )
    sparse = Runs([r for r in rows if r["benchmark"] == "bench_sparse"])
    sweep = sorted({(r["batch"], r["structure"], r["sparsity"]) for r in rows
                    if r["benchmark"] == "bench_sparse" and r["workload"] in FIRE_LAYERS},
                   key=lambda t: (int(t[0]), t[1], int(t[2])))
    if sweep:
        out += ["Sparse, geomean over the 16 Fire layers (median over the runs) of baseline "
                "time / candidate time:", "",
                "| batch | structure | sparsity | sparse vs eager | sparse vs eager (CL) "
                "| sparse vs dense fused | auto vs dense fused | sparse vs ONNX Runtime |",
                "|---|---|---|---|---|---|---|---|"]
        pairs = [("eager_nchw", "sparse_nchw"), ("eager_cl", "sparse_cl"),
                 ("dense_nchw", "sparse_nchw"), ("dense_nchw", "fused_nchw"),
                 ("onnxruntime", "sparse_nchw")]
        for batch, structure, sp in sweep:
            cells = []
            for base, cand in pairs:
                values = sparse.ratios(base, cand, batch, sparsity=sp, structure=structure)
                cells.append(f"{sorted(values)[len(values) // 2]:.2f}x" if values else "")
            out.append(f"| {batch} | {structure} | {sp} % | " + " | ".join(cells) + " |")
    return "\n".join(out).rstrip()


def newest_int8_commit(rows: list[dict[str, str]]) -> str | None:
    """The newest clean commit with bench_network's int8 rows, if any."""
    runs = sorted({(r["run_id"], r["commit"]) for r in rows
                   if r["benchmark"] == "bench_network" and r["dtype"] == "int8"
                   and not r["commit"].endswith("-dirty")}, reverse=True)
    return runs[0][1] if runs else None


def _int8_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["benchmark"] == "bench_network" and r["dtype"] == "int8"]


def int8_readme(rows: list[dict[str, str]], commit: str) -> str:
    runs = Runs(_int8_rows(rows))
    lines = [f"int8, `quantize_network` (stem, Fires and classifier), commit {commit}, "
             f"{len(runs.seconds)} run(s) of `bench_network.py`, every peer calibrated on the "
             "same images; ratios of the peer's time to ours:", "",
             "| | batch 1 | batch 16 |", "|---|---|---|"]
    for name, label in zip(NETWORKS, ("SqueezeNet 1.1", "SqueezeNet 1.0")):
        for sparsity, structure, weights in (("0", "dense", ""),
                                             ("90", "unstructured", " pruned 90 %")):
            for base, peer in (("onnxruntime_int8", "ONNX Runtime int8"),
                               ("torch_int8", "PyTorch int8")):
                cells = [_span(runs.ratios(base, "quantized_network", b, workloads=(name,),
                                           sparsity=sparsity, structure=structure))
                         for b in BATCHES]
                lines.append(f"| {label}{weights} int8 vs {peer} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def int8_tables(rows: list[dict[str, str]], commit: str) -> str:
    """RESULTS.md's int8 tables: median ms and ratios per network, batch and pruning,
    and each candidate's error against the float model."""
    rows = _int8_rows(rows)
    runs = Runs(rows)
    out = [f"Commit {commit}, {len(runs.seconds)} run(s) of `bench_network.py --sections int8`.",
           ""]
    for sparsity, structure in (("0", "dense"), ("90", "unstructured")):
        keys = [(w, b, sparsity, structure) for w in NETWORKS for b in BATCHES]
        out += _table(
            f"int8 whole networks, weights {structure}"
            + ("" if structure == "dense" else " (90 % pruned, every convolution but the stem)")
            + ": median ms; ratios = peer time / quantize_network's.",
            keys, _medians(runs, keys), INT8,
            {"vs ONNX Runtime int8": ("onnxruntime_int8", "quantized_network"),
             "vs PyTorch int8": ("torch_int8", "quantized_network")})
    errors: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["metric"] == "rel_error":
            errors[(r["workload"], r["batch"], r["structure"])][r["candidate"]].append(
                float(r["value"]))
    out += ["Largest deviation from the float model's output, relative to its largest output "
            "(median over the runs):", "",
            "| workload | batch | weights | " + " | ".join(INT8) + " |",
            "|---|---|---|" + "---|" * len(INT8)]
    for key in sorted(errors, key=lambda k: (NETWORKS.index(k[0]), int(k[1]), k[2])):
        cells = [f"{sorted(v)[len(v) // 2]:.4f}" if (v := errors[key].get(c)) else ""
                 for c in INT8]
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(out).rstrip()


def replace_between(text: str, body: str, path: Path, begin: str = BEGIN, end: str = END) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"{path} has no {begin} ... {end} section")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=RESULTS)
    parser.add_argument("--commit", help="the commit whose rows to use (default: the newest complete)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the README or RESULTS.md differ")
    args = parser.parse_args()
    all_rows = read_rows(args.csv)
    commit = args.commit or newest_complete_commit(all_rows)
    rows = [r for r in all_rows if r["commit"] == commit]
    int8_commit = newest_int8_commit(all_rows)
    int8 = [r for r in all_rows if r["commit"] == int8_commit]
    stale = []
    for path, body, int8_body in (
        (README, readme_table(rows, commit), int8_commit and int8_readme(int8, int8_commit)),
        (RESULTS_MD, result_tables(rows), int8_commit and int8_tables(int8, int8_commit)),
    ):
        text = path.read_text()
        new = replace_between(text, body, path)
        if int8_body:
            new = replace_between(new, int8_body, path, INT8_BEGIN, INT8_END)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("out of date (run python benchmarks/report.py): " + ", ".join(map(str, stale)))
        return 1
    print(("up to date" if args.check else "wrote the tables") + f" from commit {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
