"""Helpers shared by the benchmark scripts: finding lp_prune, running a child process and measuring it."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
PEER_VENV = BENCH_DIR / ".venv-llmc"


def import_lp_prune() -> Path:
    """Import lp_prune (installed, else from the checkout's src/); return the folder that holds it."""
    try:
        import lp_prune
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
        import lp_prune
    return Path(lp_prune.__file__).resolve().parent.parent


def __getattr__(name: str) -> Any:
    """LANGUAGES: lp_prune's language codes (lp_prune.languages), imported when first asked for."""
    if name == "LANGUAGES":
        import_lp_prune()
        from lp_prune.languages import LANGUAGES

        return list(LANGUAGES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def child_env(lp_prune_root: Path | None = None, threads: int | None = None) -> dict[str, str]:
    """Environment for child runs: lp_prune importable, W&B and the Hub off, optional thread count."""
    env = dict(os.environ)
    if lp_prune_root is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(lp_prune_root), env.get("PYTHONPATH", "")) if p)
    env["WANDB_MODE"] = "disabled"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[key] = str(threads)
    return env


@dataclass
class ChildRun:
    """One measured child process: its exit code, whole-process wall time and peak RSS."""

    cmd: list[str]
    rc: int
    wall_s: float
    peak_rss_mb: float  # ru_maxrss of exactly this child (os.wait4), kB on Linux -> MB
    user_s: float
    sys_s: float
    log: str


def run_measured(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path = REPO) -> ChildRun:
    """Run `cmd` through the small launcher _measure.py; output goes to log_path.

    The launcher waits for the command with os.wait4 and records its wall time and ru_maxrss. Measuring
    from this (possibly large) process would not do: a child's ru_maxrss starts at the high-water mark
    of the address space it was forked from (see _measure.py).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    measure_path = log_path.with_suffix(".measure.json")
    measure_path.unlink(missing_ok=True)
    launcher = [sys.executable, "-S", str(BENCH_DIR / "_measure.py"), str(measure_path), "--"]
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.run([*launcher, *cmd], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
        outer_wall = time.perf_counter() - start
    try:
        measured = json.loads(measure_path.read_text())
    except (OSError, ValueError):  # the launcher itself failed: keep what the outside saw
        measured = {"rc": proc.returncode, "wall_s": outer_wall, "peak_rss_kb": float("nan"), "user_s": 0, "sys_s": 0}
    return ChildRun(
        cmd=[str(c) for c in cmd],
        rc=measured["rc"],
        wall_s=measured["wall_s"],
        peak_rss_mb=measured["peak_rss_kb"] / 1024,
        user_s=measured["user_s"],
        sys_s=measured["sys_s"],
        log=str(log_path),
    )


def lp_prune_command(
    method: str,
    token_file: Path,
    nsamples: int,
    seqlen: int,
    out: Path,
    save_model: bool,
    batch_size: int | None = None,
    config: Path = DEFAULT_CONFIG,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """`lp-prune run` (as `python -m lp_prune run`) on a token file, perplexity and W&B off."""
    cmd = [sys.executable, "-m", "lp_prune", "run", "--config", str(config)]
    cmd += ["--prune.method", method, "--data.source", "tokens", "--data.token_file", str(token_file)]
    cmd += ["--data.nsamples", str(nsamples), "--data.seqlen", str(seqlen), "--data.eval_windows", "0"]
    cmd += ["--eval.perplexity", "false", "--save_model", str(save_model).lower(), "--checkpoint", "false"]
    cmd += ["--wandb.mode", "disabled", "--out", str(out)]
    if batch_size:
        cmd += ["--data.batch_size", str(batch_size)]
    return cmd + list(extra)  # e.g. --prune.single_pass true


def flop_options(lp_args: list[str]) -> dict[str, Any]:
    """pruning_flops() keywords for lp-prune flags that change the work (single pass, no metrics)."""
    flags = dict(zip(lp_args[::2], lp_args[1::2], strict=False))
    local_error = flags.get("--prune.local_error", "auto")
    return {
        "forward_passes": 1 if flags.get("--prune.single_pass") == "true" else 2,
        "metrics": {"true": "exact", "false": "off"}.get(local_error, local_error),
    }


def make_token_file(path: Path, nsamples: int, seqlen: int, language: str = "en", seed: int = 0) -> Path:
    """Calibration token ids [nsamples, seqlen] from lp_prune's own data path, saved with torch.save."""
    import torch

    from lp_prune.config import DataConfig, ModelConfig
    from lp_prune.data import PruningDataModule
    from lp_prune.models.loading import load_tokenizer_and_config, max_positions

    tokenizer, model_config = load_tokenizer_and_config(ModelConfig())
    config = DataConfig(calibration_language=language, nsamples=nsamples, seqlen=seqlen, eval_windows=0, seed=seed)
    data = PruningDataModule(config, tokenizer, max_positions(model_config))
    data.setup()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data.calibration.ids.clone(), path)
    return path


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'64x256,128x512' -> [(64, 256), (128, 512)]."""
    sizes = []
    for item in text.split(","):
        n, _, length = item.strip().lower().partition("x")
        if not n.isdigit() or not length.isdigit():
            raise SystemExit(f"error: size '{item}' is not NxL (e.g. 64x256)")
        sizes.append((int(n), int(length)))
    return sizes


def parse_ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: '{text}' is not a comma-separated list of integers") from None


def results_dir(out: str | None) -> Path:
    path = Path(out) if out else BENCH_DIR / "results" / datetime.now().strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "load_avg_at_start": os.getloadavg(),
    }


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def progress(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: '-' for missing values, floats with `digits` decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mask_agreement(reference: Path, other: Path) -> dict[str, float]:
    """IoU of two runs' pruned positions, pooled over all Linears and the lowest of any Linear."""
    from lp_prune.analysis.compare.mask_iou import pooled_mask_iou

    pooled, lowest = pooled_mask_iou(reference, other)
    return {"iou": pooled, "min_module_iou": lowest}


def write_report(out: Path, report: dict[str, Any], text: str) -> None:
    """results.json and results.md in `out`; the Markdown is printed too."""
    write_json(out / "results.json", report)
    (out / "results.md").write_text(text)
    print(text)
    progress(f"wrote {out / 'results.json'} and {out / 'results.md'}")
