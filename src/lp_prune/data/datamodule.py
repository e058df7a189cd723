"""LightningDataModule: calibration windows of one language, evaluation windows of several.

`val_dataloader()` returns one loader per evaluation language in `eval_language_order`, then one per
reference set (data.reference_sets: wikitext2, c4_en; see lp_prune.data.reference), so
`trainer.validate(PerplexityEvaluation(...), datamodule=dm)` sees every language and set as its own
dataloader_idx. Calibration windows (`calibration.ids`) go to the calibration module directly: its
steps are layers, not batches of data.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from lp_prune.config import DataConfig
from lp_prune.data.generated import GENERATED_RECORD_FILE
from lp_prune.data.record import calibration_record
from lp_prune.data.reference import load_reference_windows
from lp_prune.data.text import (
    DEFAULT_BLOCK_CHARS,
    PACKAGED_CODES,
    file_documents,
    mc4_documents,
    open_mc4,
    packaged_documents,
    split_documents,
)
from lp_prune.data.windows import (
    TokenWindows,
    bos_ids,
    calibration_windows,
    calibration_windows_from_documents,
    check_seqlen,
    evaluation_windows,
    evaluation_windows_from_documents,
    load_token_file,
)
from lp_prune.errors import DataError


class EvaluationDataset(Dataset):
    """Rows of TokenWindows as {"input_ids": [seqlen], "n_bytes": []}; default collate stacks them."""

    def __init__(self, windows: TokenWindows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.windows.ids[index], "n_bytes": self.windows.n_bytes[index]}


class PruningDataModule(L.LightningDataModule):
    """Builds `calibration` (TokenWindows) and `evaluation` ({lang or reference set: TokenWindows}) from a
    DataConfig."""

    def __init__(self, config: DataConfig, tokenizer: Any, max_positions: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.calibration: TokenWindows | None = None
        self.evaluation: dict[str, TokenWindows] = {}
        self.calibration_languages: list[str] = []  # language of each calibration window
        # Which text each calibration window came from (calibration_record; written to the run directory).
        self.calibration_record: dict[str, Any] | None = None
        self._calibration_sources: dict[str, dict[str, Any]] = {}  # per language: where its text comes from
        self._set_up = False
        # (calibration blocks, evaluation blocks) per language: text is read and split once.
        self._splits: dict[str, tuple[list[str], list[str]]] = {}

    # -- setup -----------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Calibration and evaluation windows; with data.source generated only the evaluation ones
        (the model writes its calibration text once it has loaded: see set_calibration)."""
        if self._set_up:
            return  # idempotent: Lightning calls setup once per stage
        config = self.config
        config.validate()
        check_seqlen(config.seqlen, self.max_positions, "data.seqlen")
        if config.eval_windows > 0:
            check_seqlen(config.eval_seqlen, self.max_positions, "data.eval_seqlen")
        if config.reference_sets:
            check_seqlen(config.reference_seqlen, self.max_positions, "data.reference_seqlen")
        calibration = None if config.source == "generated" else self._calibration_mix()
        self.evaluation = {lang: self._evaluation_windows(lang) for lang in self._eval_languages()}
        for name in self._reference_sets():
            self.evaluation[name] = load_reference_windows(
                name,
                self.tokenizer,
                config.reference_seqlen,
                config.reference_files.get(name),
                config.reference_windows,
            )
        self.calibration_record = (
            calibration_record(
                config, self._calibration_sources, calibration, self.calibration_languages, bos_ids(self.tokenizer)
            )
            if calibration is not None
            else None
        )
        self.calibration = calibration
        self._set_up = True  # set last: a failed setup leaves the module un-set-up

    def set_calibration(self, windows: TokenWindows, languages: list[str]) -> None:
        """Calibration windows made after setup (data.source generated: lp_prune.data.generated)."""
        if len(languages) != len(windows):
            raise ValueError(f"{len(windows)} calibration windows but {len(languages)} languages")
        self.calibration, self.calibration_languages = windows, list(languages)
        generated = {"source": "generated", "record": GENERATED_RECORD_FILE}  # the texts, prompts and filters
        self._calibration_sources = dict.fromkeys(languages, generated)
        bos = bos_ids(self.tokenizer)
        self.calibration_record = calibration_record(self.config, self._calibration_sources, windows, languages, bos)

    def release_tokenizer(self) -> None:
        """Let the tokenizer go once every window is built (set_calibration needs it until then): a
        large-vocabulary tokenizer holds a few hundred MB."""
        self.tokenizer = None

    def _eval_languages(self) -> list[str]:
        if self.config.eval_windows == 0:
            return []
        return list(dict.fromkeys(self.config.eval_languages))  # a language listed twice is evaluated once

    def _reference_sets(self) -> list[str]:
        return list(dict.fromkeys(self.config.reference_sets))

    def _calibration_mix(self) -> TokenWindows:
        """Each language's windows in the mix's order (a single language is a mix of one)."""
        parts = {lang: self._calibration_windows(lang, n) for lang, n in self.config.recipe().windows}
        self.calibration_languages = [lang for lang, part in parts.items() for _ in range(len(part))]
        ids = torch.cat([part.ids for part in parts.values()])
        origins = [origin for part in parts.values() for origin in part.origins]
        return TokenWindows(ids, torch.cat([part.n_bytes for part in parts.values()]), origins)

    def _calibration_windows(self, lang: str, nsamples: int) -> TokenWindows:
        config = self.config
        if config.source == "tokens":
            assert config.token_file is not None  # DataConfig.validate guarantees it
            windows = load_token_file(config.token_file, seqlen=config.seqlen, vocab_size=len(self.tokenizer))
            if len(windows) < nsamples:
                raise DataError(
                    f"token file {config.token_file} holds {len(windows)} windows; "
                    f"asked for {nsamples} (lower data.nsamples)"
                )
            self._calibration_sources[lang] = {"source": "tokens", "token_file": str(config.token_file)}
            origins = [{"file_row": row} for row in range(nsamples)]
            return TokenWindows(windows.ids[:nsamples], windows.n_bytes[:nsamples], origins)
        name = f"calibration text for '{lang}'"
        if config.source == "mc4":
            stream = open_mc4(lang, "train", seed=config.seed, shuffle_buffer=config.shuffle_buffer)
            self._calibration_sources[lang] = stream.describe()
            return calibration_windows_from_documents(
                stream,
                self.tokenizer,
                nsamples,
                config.seqlen,
                config.seed,
                name=f"mC4 train for '{lang}'",
                progress=rank_zero_only.rank == 0,
            )
        blocks = self._split(lang)[0]
        self._calibration_sources[lang] = self._text_source(lang)
        return calibration_windows(blocks, self.tokenizer, nsamples, config.seqlen, config.seed, name=name)

    def _text_source(self, lang: str) -> dict[str, Any]:
        """Where packaged or local calibration text comes from and how it was split (for the record)."""
        config = self.config
        split = {"part": "calibration", "block_chars": DEFAULT_BLOCK_CHARS, "eval_fraction": config.eval_fraction}
        if config.source == "files":
            return {"source": "files", "file": str(config.files[lang]), **split}
        return {
            "source": "packaged",
            "package": "dataset-build",
            "version": _package_version("dataset-build"),
            "folder": PACKAGED_CODES[lang],
            **split,
        }

    def _evaluation_windows(self, lang: str) -> TokenWindows:
        config = self.config
        if config.source == "mc4":
            docs = mc4_documents(lang, "validation")
            return evaluation_windows_from_documents(
                docs,
                self.tokenizer,
                config.eval_windows,
                config.eval_seqlen,
                name=f"mC4 validation for '{lang}'",
            )
        blocks = self._split(lang)[1]
        name = f"evaluation text for '{lang}'"
        return evaluation_windows(blocks, self.tokenizer, config.eval_windows, config.eval_seqlen, name=name)

    def _split(self, lang: str) -> tuple[list[str], list[str]]:
        if lang not in self._splits:
            self._splits[lang] = split_documents(self._documents(lang), self.config.eval_fraction)
        return self._splits[lang]

    def _documents(self, lang: str) -> list[str]:
        """Packaged or local text; with source 'tokens' evaluation text is the packaged one."""
        if self.config.source != "files":
            return packaged_documents(lang)
        if lang not in self.config.files:
            raise DataError(
                f"data.files has no text file for '{lang}'; add data.files.{lang} or drop '{lang}' "
                f"from data.eval_languages"
            )
        return file_documents(self.config.files[lang])

    # -- loaders ---------------------------------------------------------------------------------

    @property
    def eval_language_order(self) -> list[str]:
        """Languages, then reference sets, of `val_dataloader()`: dataloader_idx i is eval_language_order[i]."""
        return [name for name in self._eval_languages() + self._reference_sets() if name in self.evaluation]

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per evaluation language and reference set in `eval_language_order`: batches of
        {"input_ids": LongTensor [b, seqlen], "n_bytes": LongTensor [b]}. Under a Trainer with several
        processes, each loader holds this process's contiguous share of the windows."""
        self._check_setup()
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return [
            DataLoader(
                EvaluationDataset(self.evaluation[lang].share(rank, world_size)),
                batch_size=self.config.eval_batch_size,
                shuffle=False,
            )
            for lang in self.eval_language_order
        ]

    def _check_setup(self) -> None:
        if not self._set_up:
            raise RuntimeError("PruningDataModule.setup() has not run yet")


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
