"""lp_prune vs llm-compressor, side by side, on the packaged Gemma-3-270M at 50% unstructured sparsity.

For every method (SparseGPT, Wanda, GPTQ) and calibration size n x L:
1. the calibration token ids are made once with lp_prune's own data path (packaged English text,
   seed 0) and saved to a .pt file that BOTH tools read, so they see the same tokens;
2. lp_prune (`python -m lp_prune run --data.source tokens ...`) and the peer
   (`peer_llmcompressor.py` in benchmarks/.venv-llmc) run as child processes, alternating, --repeats
   times; each child's whole-process wall time and peak RSS come from os.wait4 on exactly that child,
   and each tool's own pruning-step time from its output (lp_prune: summary.json timings_s.prune;
   peer: result.json prune_s, the wall time of `oneshot`);
3. both pruned models (first repeat) and the dense model are evaluated with lp_prune's perplexity
   evaluator on the same held-out windows of the seven languages;
4. the pruning masks are compared: pruned positions = exact zeros of each saved decoder Linear;
   IoU = |A & B| / |A | B| pooled over all decoder Linears and per projection. The dense model
   already holds ~4.5% exact zeros (it was 4-bit quantised), which both tools keep; IoU is also
   given over the positions that were non-zero in the dense model ("iou_new");
5. GPTQ (--methods gptq; --bits, --group-size, asymmetric, no activation order, for both tools):
   instead of masks, the share of decoder weights both tools set to the same value, and each tool's
   weight error ||W_q - W_dense||_F / ||W_dense||_F.

    python benchmarks/compare_llmcompressor.py                      # both methods, 64x256 and 128x512
    python benchmarks/compare_llmcompressor.py --methods wanda --sizes 4x64 --eval-windows 1   # smoke
    python benchmarks/compare_llmcompressor.py --methods gptq --sizes 64x256 --repeats 2   # 4-bit, group 128

Writes benchmarks/results/<timestamp>/results.json and results.md and prints the Markdown.
The peer venv must exist: bash benchmarks/setup_peer.sh.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    LANGUAGES,
    PEER_VENV,
    ChildRun,
    child_env,
    flop_options,
    fmt,
    import_lp_prune,
    log_tail,
    lp_prune_command,
    machine_info,
    make_token_file,
    median,
    parse_sizes,
    progress,
    results_dir,
    run_measured,
    write_report,
)
from flops import pruning_flops

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare lp_prune with llm-compressor on Gemma-3-270M")
    parser.add_argument("--methods", default="sparsegpt,wanda", help="comma-separated: sparsegpt,wanda,gptq")
    parser.add_argument("--sizes", default="64x256,128x512", help="calibration sizes NxL, comma-separated")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each tool per setting (alternating)")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--bits", type=int, default=4, help="gptq: bits per weight")
    parser.add_argument("--group-size", type=int, default=128, help="gptq: columns per grid")
    parser.add_argument("--eval-windows", type=int, default=8, help="held-out windows per language (0: no ppl)")
    parser.add_argument("--eval-seqlen", type=int, default=256)
    parser.add_argument("--calibration-language", default="en")
    parser.add_argument("--lp-batch-size", type=int, help="lp_prune data.batch_size (default: its config, 8)")
    parser.add_argument("--peer-batch-size", type=int, default=1, help="oneshot batch_size (its default: 1)")
    parser.add_argument("--threads", type=int, help="OMP/MKL threads for both children (default: torch's)")
    parser.add_argument("--peer-python", default=str(PEER_VENV / "bin" / "python"))
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>)")
    parser.add_argument("--matmul-gflops", type=float, help="this machine's matmul rate (matmul_rate.py)")
    parser.add_argument("--keep-models", action="store_true", help="keep the saved pruned models")
    parser.add_argument("--lp-args", default="", help="extra lp-prune flags, e.g. '--prune.single_pass true'")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in args.methods:
        if method not in ("sparsegpt", "wanda", "gptq"):
            parser.error(f"--methods: '{method}' is not sparsegpt, wanda or gptq")
    args.sizes = parse_sizes(args.sizes)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


# -- running the tools ---------------------------------------------------------------------------


def run_lp_prune(args, method, token_file, n, length, out: Path, env) -> dict[str, Any]:
    extra = shlex.split(args.lp_args) + (gptq_flags(args) if method == "gptq" else [])
    cmd = lp_prune_command(method, token_file, n, length, out, True, batch_size=args.lp_batch_size, extra=extra)
    child = run_measured(cmd, out.parent / f"{out.name}.log", env)
    record = _record("lp_prune", child)
    summary_path = out / "summary.json"
    if child.rc == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        timings = summary.get("timings_s", {})
        record.update(
            prune_s=timings.get("prune"),
            timings_s=timings,
            self_peak_rss_mb=summary.get("peak_rss_mb"),
            sparsity=summary.get("sparsity"),
            model_dir=str(out / "model"),
        )
    return record


def gptq_flags(args) -> list[str]:
    """lp_prune's GPTQ settings matching the peer's: the same grid, columns in their own order."""
    return ["--prune.bits", str(args.bits), "--prune.group_size", str(args.group_size),
            "--prune.symmetric", "false", "--prune.act_order", "false"]  # fmt: skip


def run_peer(args, method, token_file, out: Path, env) -> dict[str, Any]:
    script = BENCH_DIR / "peer_llmcompressor.py"
    cmd = [args.peer_python, str(script), "--model", str(_model_dir()), "--tokens", str(token_file)]
    cmd += ["--method", method, "--sparsity", str(args.sparsity), "--out", str(out)]
    cmd += ["--batch-size", str(args.peer_batch_size)]
    if method == "gptq":
        cmd += ["--bits", str(args.bits), "--group-size", str(args.group_size)]
    child = run_measured(cmd, out.parent / f"{out.name}.log", env)
    record = _record("llmcompressor", child)
    result_path = out / "result.json"
    if child.rc == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
        record.update(
            prune_s=result.get("prune_s"),
            self_process_s=result.get("process_s"),
            self_peak_rss_mb=result.get("peak_rss_mb"),
            sparsity=result.get("decoder_linear_zeros"),
            all_rows_used=result.get("all_rows_used"),
            versions=result.get("versions"),
            model_dir=str(out / "model"),
        )
    return record


def _record(tool: str, child: ChildRun) -> dict[str, Any]:
    return {
        "tool": tool,
        "rc": child.rc,
        "process_s": child.wall_s,
        "peak_rss_mb": child.peak_rss_mb,
        "user_s": child.user_s,
        "sys_s": child.sys_s,
        "prune_s": None,
        "log": child.log,
        "cmd": child.cmd,
    }


def _model_config():
    from lp_prune.config import ModelConfig
    from lp_prune.models.loading import load_tokenizer_and_config

    return load_tokenizer_and_config(ModelConfig())[1]


def _model_dir() -> Path:
    from lp_prune.models.loading import packaged_model_dir

    return packaged_model_dir()


# -- evaluation ----------------------------------------------------------------------------------


def evaluation_data(args):
    """lp_prune's datamodule with the held-out windows of the seven languages (no calibration needed)."""
    from lp_prune.config import DataConfig, ModelConfig
    from lp_prune.data import PruningDataModule
    from lp_prune.models.loading import load_tokenizer_and_config, max_positions

    tokenizer, model_config = load_tokenizer_and_config(ModelConfig())
    config = DataConfig(
        calibration_language=args.calibration_language,
        eval_languages=list(LANGUAGES),
        nsamples=1,
        seqlen=16,
        eval_windows=args.eval_windows,
        eval_seqlen=args.eval_seqlen,
    )
    data = PruningDataModule(config, tokenizer, max_positions(model_config))
    data.setup()
    return data


def perplexity_of(folder: Path | None, data) -> dict[str, float]:
    """Perplexity per language of a saved model folder (None: the dense packaged model)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lp_prune.evaluation.perplexity import evaluate_perplexity

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available: False" banners
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a Lightning-internal deprecation notice
    model = AutoModelForCausalLM.from_pretrained(folder or _model_dir(), dtype=torch.float32)
    model.eval()
    model.config.use_cache = False
    trainer_kwargs = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": False,
    }
    results = evaluate_perplexity(model, data, trainer_kwargs)
    del model
    return {lang: values["perplexity"] for lang, values in results.items()}


# -- masks ---------------------------------------------------------------------------------------


def mask_iou(folder_a: Path, folder_b: Path, dense: Path) -> dict[str, Any]:
    """IoU of the exact-zero positions of two saved models over all decoder Linears, pooled and per projection."""
    from safetensors import safe_open

    def open_all(folder: Path) -> dict[str, Any]:
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no .safetensors in {folder}")
        handles = {}
        for file in files:
            handle = safe_open(str(file), "pt")
            handles.update(dict.fromkeys(handle.keys(), handle))
        return handles

    a, b, d = open_all(folder_a), open_all(folder_b), open_all(dense)
    names = sorted(k for k in d if "model.layers." in k and k.endswith(".weight") and k in a and k in b)
    keys = ["inter", "union", "inter_new", "union_new", "a", "b", "dense", "numel", "diff_sq", "ref_sq",
            "equal", "a_err_sq", "b_err_sq", "dense_sq"]  # fmt: skip
    totals = {p: dict.fromkeys(keys, 0.0) for p in [*PROJECTIONS, "all"]}
    for name in names:
        wd = d[name].get_tensor(name)
        if wd.dim() != 2:
            continue  # norms are 1-D; only Linear weights are 2-D
        wa, wb = a[name].get_tensor(name).float(), b[name].get_tensor(name).float()
        za, zb, zd = wa == 0, wb == 0, wd == 0
        new = ~zd
        proj = name.rsplit(".", 2)[-2]
        counts = {
            "inter": int((za & zb).sum()),
            "union": int((za | zb).sum()),
            "inter_new": int((za & zb & new).sum()),
            "union_new": int(((za | zb) & new).sum()),
            "a": int(za.sum()),
            "b": int(zb.sum()),
            "dense": int(zd.sum()),
            "numel": wd.numel(),
            "diff_sq": float((wa - wb).square().sum()),
            "ref_sq": float(wb.square().sum()),
            "equal": int((wa == wb).sum()),
            "a_err_sq": float((wa - wd.float()).square().sum()),
            "b_err_sq": float((wb - wd.float()).square().sum()),
            "dense_sq": float(wd.float().square().sum()),
        }
        for group in {proj if proj in totals else "all", "all"}:
            for key, value in counts.items():
                totals[group][key] += value
    out: dict[str, Any] = {}
    for group, t in totals.items():
        if not t["numel"]:
            continue
        out[group] = {
            "iou": t["inter"] / t["union"] if t["union"] else float("nan"),
            "iou_new": t["inter_new"] / t["union_new"] if t["union_new"] else float("nan"),
            "zeros_lp": t["a"] / t["numel"],
            "zeros_peer": t["b"] / t["numel"],
            "dense_zeros": t["dense"] / t["numel"],
            "weight_rel_diff": (t["diff_sq"] / t["ref_sq"]) ** 0.5 if t["ref_sq"] else float("nan"),
            "same_weights": t["equal"] / t["numel"],
            "error_lp": (t["a_err_sq"] / t["dense_sq"]) ** 0.5 if t["dense_sq"] else float("nan"),
            "error_peer": (t["b_err_sq"] / t["dense_sq"]) ** 0.5 if t["dense_sq"] else float("nan"),
            "numel": int(t["numel"]),
        }
    out["modules"] = len(names)
    p = out.get("all", {}).get("zeros_lp", 0.5)
    out["chance_iou"] = p * p / (2 * p - p * p) if p else float("nan")
    return out


# -- report --------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    langs = LANGUAGES
    lines = [
        "# lp_prune vs llm-compressor",
        "",
        f"Model: packaged Gemma-3-270M (float32, CPU), {setting_text(report['settings'])}; "
        f"calibration: lp_prune's packaged '{report['settings']['calibration_language']}' windows, the same token "
        f"ids for both tools; repeats: {report['settings']['repeats']} (times and memory: median). "
        f"Perplexity: {report['settings']['eval_windows']} held-out windows x {report['settings']['eval_seqlen']} "
        "tokens per language."
        + (f" lp_prune flags: `{report['settings']['lp_args']}`." if report["settings"].get("lp_args") else ""),
        "",
        "prune_s: each tool's pruning step (lp_prune: timings_s.prune; llm-compressor: `oneshot`); process_s and "
        "peak_rss_mb: the whole child process (os.wait4). lp/peer: ratio, below 1 = lp_prune faster / smaller. "
        "IoU: pruned positions (exact zeros) of the two tools, all decoder Linears pooled.",
        "",
        "| method | size | tool | prune_s | process_s | peak_rss_mb | "
        + " | ".join(f"ppl {x}" for x in langs)
        + " | IoU |",
        "|---|---|---|---|---|---|" + "---|" * len(langs) + "---|",
    ]
    dense = report.get("dense_perplexity") or {}
    if dense:
        lines.append("| dense | - | - | - | - | - | " + " | ".join(fmt(dense.get(x)) for x in langs) + " | - |")
    for s in report["settings_results"]:
        iou = None if s["method"] == "gptq" else (s.get("iou") or {}).get("all", {}).get("iou")
        for tool, key in (("lp_prune", "lp"), ("llmcompressor", "peer")):
            t = s[key]
            ppl = s.get("perplexity", {}).get(key) or {}
            lines.append(
                f"| {s['method']} | {s['size']} | {tool} | {fmt(t['prune_s'])} | {fmt(t['process_s'])} | "
                f"{fmt(t['peak_rss_mb'], 0)} | " + " | ".join(fmt(ppl.get(x)) for x in langs) + f" | {fmt(iou, 3)} |"
            )
        r = s["ratio"]
        lines.append(
            f"| {s['method']} | {s['size']} | lp/peer | {fmt(r['prune_s'])} | {fmt(r['process_s'])} | "
            f"{fmt(r['peak_rss_mb'])} | " + " | ".join("" for _ in langs) + " | |"
        )
    lines += gptq_lines(report)
    pruned = [s for s in report["settings_results"] if s["method"] != "gptq"]
    if pruned:
        lines += mask_lines(pruned)
    lines += [
        "",
        "lp_prune's achieved rate (flops.py count / prune_s): "
        + "; ".join(
            f"{s['method']} {s['size']}: {fmt(s.get('lp_gflop'), 0)} GFLOP, "
            f"{fmt(s['lp'].get('gflops_per_s'), 1)} GFLOP/s"
            + (f" ({fmt(s['lp'].get('fraction_of_matmul'), 3)} of matmul)" if s["lp"].get("fraction_of_matmul") else "")
            for s in report["settings_results"]
        ),
    ]
    failures = [r for r in report["runs"] if r["rc"] != 0]
    if failures:
        lines += ["", "## Failed runs", ""] + [
            f"- {r['tool']} {r['method']} {r['size']}: rc {r['rc']}, log {r['log']}" for r in failures
        ]
    return "\n".join(lines) + "\n"


def setting_text(settings: dict[str, Any]) -> str:
    """'pruning at 50% unstructured', 'GPTQ at 4 bits, group 128', or both, as the methods compared ask."""
    parts = []
    if any(m != "gptq" for m in settings["methods"]):
        parts.append(f"pruning at {settings['sparsity']:.0%} unstructured")
    if "gptq" in settings["methods"]:
        parts.append(f"GPTQ at {settings.get('bits')} bits, group {settings.get('group_size')}")
    return ", ".join(parts)


def mask_lines(pruned: list[dict[str, Any]]) -> list[str]:
    """The pruning settings' masks: IoU per projection, sparsity, kept-weight difference."""
    lines = ["", "## Mask IoU per projection", ""]
    lines.append(
        "| method | size | "
        + " | ".join(PROJECTIONS)
        + " | all | all, dense zeros left out | chance | kept-weight diff |"
    )
    lines.append("|---|---|" + "---|" * (len(PROJECTIONS) + 4))
    for s in pruned:
        iou = s.get("iou") or {}
        if not iou:
            continue
        cells = [fmt(iou.get(p, {}).get("iou"), 3) for p in PROJECTIONS]
        overall = iou.get("all", {})
        lines.append(
            f"| {s['method']} | {s['size']} | "
            + " | ".join(cells)
            + f" | {fmt(overall.get('iou'), 3)} | {fmt(overall.get('iou_new'), 3)} | {fmt(iou.get('chance_iou'), 3)}"
            f" | {fmt(overall.get('weight_rel_diff'), 4)} |"
        )
    lines += [
        "",
        "Sparsity (exact zeros, decoder Linears): "
        + "; ".join(
            f"{s['method']} {s['size']}: lp_prune {fmt((s.get('iou') or {}).get('all', {}).get('zeros_lp'), 4)}, "
            f"llmcompressor {fmt((s.get('iou') or {}).get('all', {}).get('zeros_peer'), 4)}, "
            f"dense {fmt((s.get('iou') or {}).get('all', {}).get('dense_zeros'), 4)}"
            for s in pruned
        ),
        "",
        "kept-weight diff: ||W_lp - W_peer||_F / ||W_peer||_F over all decoder Linears (0 for identical weights).",
    ]
    return lines


def gptq_lines(report: dict[str, Any]) -> list[str]:
    """The GPTQ settings' weights side by side: how many agree, and each tool's error."""
    quantized = [s for s in report["settings_results"] if s["method"] == "gptq" and s.get("iou")]
    if not quantized:
        return []
    bits, group = report["settings"].get("bits"), report["settings"].get("group_size")
    lines = ["", f"## GPTQ {bits}-bit, group {group}: the quantized weights", "",
             "| size | same weights | lp_prune error | llmcompressor error | lp vs peer |",
             "|---|---|---|---|---|"]  # fmt: skip
    for s in quantized:
        overall = s["iou"]["all"]
        lines.append(
            f"| {s['size']} | {fmt(overall.get('same_weights'), 4)} | {fmt(overall.get('error_lp'), 4)} | "
            f"{fmt(overall.get('error_peer'), 4)} | {fmt(overall.get('weight_rel_diff'), 4)} |"
        )
    lines += ["", "error: ||W_q - W_dense||_F / ||W_dense||_F over all decoder Linears (the grid's rounding plus "
              "GPTQ's updates of the later columns); lp vs peer: ||W_lp - W_peer||_F / ||W_peer||_F."]  # fmt: skip
    return lines


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.peer_python).exists():
        print(
            f"error: the llm-compressor venv is missing ({args.peer_python}); run: bash benchmarks/setup_peer.sh",
            file=sys.stderr,
        )
        return 2
    root = import_lp_prune()
    env = child_env(root, args.threads)
    out = results_dir(args.out)
    progress(f"results in {out}")
    dense_dir = _model_dir()

    token_files = {}
    for n, length in args.sizes:
        progress(f"calibration tokens {n}x{length} ({args.calibration_language}, lp_prune's data path)")
        token_files[(n, length)] = make_token_file(
            out / "tokens" / f"{n}x{length}.pt", n, length, args.calibration_language
        )

    runs: list[dict[str, Any]] = []
    settings = [(m, n, length) for n, length in args.sizes for m in args.methods]
    total = len(settings) * args.repeats * 2
    step = 0
    eval_data = None
    dense_ppl: dict[str, float] = {}
    if args.eval_windows > 0:
        progress(f"evaluation windows: {args.eval_windows} x {args.eval_seqlen} tokens x {len(LANGUAGES)} languages")
        eval_data = evaluation_data(args)
        progress("perplexity of the dense model")
        dense_ppl = perplexity_of(None, eval_data)

    settings_results = []
    for method, n, length in settings:
        size = f"{n}x{length}"
        token_file = token_files[(n, length)]
        per_tool: dict[str, list[dict[str, Any]]] = {"lp": [], "peer": []}
        for repeat in range(args.repeats):
            base = out / "runs" / f"{method}-{size}-r{repeat}"
            for key, runner in (("lp", "lp_prune"), ("peer", "llmcompressor")):
                step += 1
                progress(f"[{step}/{total}] {method} {size} repeat {repeat + 1}/{args.repeats}: {runner}")
                if key == "lp":
                    record = run_lp_prune(args, method, token_file, n, length, base / "lp", env)
                else:
                    record = run_peer(args, method, token_file, base / "peer", env)
                record.update(method=method, size=size, repeat=repeat)
                runs.append(record)
                per_tool[key].append(record)
                if record["rc"] != 0:
                    progress(f"  FAILED (rc {record['rc']}); log {record['log']}:\n{log_tail(record['log'])}")
                else:
                    progress(
                        f"  prune_s {fmt(record['prune_s'])}  process_s {fmt(record['process_s'])}  "
                        f"peak_rss_mb {fmt(record['peak_rss_mb'], 0)}"
                    )
                if repeat > 0 and record.get("model_dir"):
                    shutil.rmtree(record["model_dir"], ignore_errors=True)  # only the first repeat is evaluated
        agg = {
            key: {
                metric: median([r[metric] for r in recs if r["rc"] == 0])
                for metric in ("prune_s", "process_s", "peak_rss_mb")
            }
            for key, recs in per_tool.items()
        }
        result: dict[str, Any] = {
            "method": method,
            "size": size,
            "nsamples": n,
            "seqlen": length,
            "token_file": str(token_file),
            "lp": agg["lp"],
            "peer": agg["peer"],
            "ratio": {k: _ratio(agg["lp"][k], agg["peer"][k]) for k in ("prune_s", "process_s", "peak_rss_mb")},
            "perplexity": {},
        }
        # Efficiency of lp_prune's step: analytic FLOPs (flops.py) per second of prune_s.
        lp_flops = pruning_flops(_model_config(), n, length, method, **flop_options(shlex.split(args.lp_args)))
        result["lp_gflop"] = lp_flops["total"] / 1e9
        if agg["lp"]["prune_s"]:
            result["lp"]["gflops_per_s"] = result["lp_gflop"] / agg["lp"]["prune_s"]
            if args.matmul_gflops:
                result["lp"]["fraction_of_matmul"] = result["lp"]["gflops_per_s"] / args.matmul_gflops
        first = {key: recs[0] for key, recs in per_tool.items()}
        ok = all(r["rc"] == 0 and r.get("model_dir") for r in first.values())
        if ok:
            lp_model, peer_model = Path(first["lp"]["model_dir"]), Path(first["peer"]["model_dir"])
            progress(f"mask IoU {method} {size}")
            result["iou"] = mask_iou(lp_model, peer_model, dense_dir)
            overall = result["iou"]["all"]
            progress(f"  IoU all {overall['iou']:.4f} (dense zeros left out {overall['iou_new']:.4f})")
            if eval_data is not None:
                for key, folder in (("lp", lp_model), ("peer", peer_model)):
                    progress(f"perplexity {method} {size} {first[key]['tool']}")
                    result["perplexity"][key] = perplexity_of(folder, eval_data)
            if not args.keep_models:
                for folder in (lp_model, peer_model):
                    shutil.rmtree(folder, ignore_errors=True)
        settings_results.append(result)

    report = {
        "settings": {
            "lp_args": args.lp_args,
            "methods": args.methods,
            "sizes": [f"{n}x{length}" for n, length in args.sizes],
            "repeats": args.repeats,
            "sparsity": args.sparsity,
            "pattern": "unstructured",
            "bits": args.bits,
            "group_size": args.group_size,
            "calibration_language": args.calibration_language,
            "eval_windows": args.eval_windows,
            "eval_seqlen": args.eval_seqlen,
            "lp_batch_size": args.lp_batch_size or "config default",
            "peer_batch_size": args.peer_batch_size,
            "threads": args.threads or "torch default",
            "model": str(dense_dir),
        },
        "machine": machine_info(),
        "peer_versions": next((r.get("versions") for r in runs if r.get("versions")), None),
        "dense_perplexity": dense_ppl,
        "settings_results": settings_results,
        "runs": runs,
    }
    write_report(out, report, markdown(report))
    return 1 if any(r["rc"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
