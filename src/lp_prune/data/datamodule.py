"""LightningDataModule: calibration windows of one language, evaluation windows of several.

`val_dataloader()` returns one loader per evaluation language in `eval_language_order`, so
`trainer.validate(module, datamodule=dm)` sees every language as its own dataloader_idx.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lp_prune.config import DataConfig
from lp_prune.data.text import file_documents, mc4_documents, packaged_documents, split_documents
from lp_prune.data.windows import (
    TokenWindows,
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
    """Builds `calibration` (TokenWindows) and `evaluation` ({lang: TokenWindows}) from a DataConfig."""

    def __init__(self, config: DataConfig, tokenizer: Any, max_positions: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.calibration: TokenWindows | None = None
        self.evaluation: dict[str, TokenWindows] = {}
        self.calibration_languages: list[str] = []  # language of each calibration window
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
        calibration = None if config.source == "generated" else self._calibration_mix()
        self.evaluation = {lang: self._evaluation_windows(lang) for lang in self._eval_languages()}
        self.calibration = calibration
        self._set_up = True  # set last: a failed setup leaves the module un-set-up

    def set_calibration(self, windows: TokenWindows, languages: list[str]) -> None:
        """Calibration windows made after setup (data.source generated: lp_prune.data.generated)."""
        if len(languages) != len(windows):
            raise ValueError(f"{len(windows)} calibration windows but {len(languages)} languages")
        self.calibration, self.calibration_languages = windows, list(languages)

    def _eval_languages(self) -> list[str]:
        if self.config.eval_windows == 0:
            return []
        return list(dict.fromkeys(self.config.eval_languages))  # a language listed twice is evaluated once

    def _calibration_mix(self) -> TokenWindows:
        """Each language's windows in the mix's order (a single language is a mix of one)."""
        parts = {lang: self._calibration_windows(lang, n) for lang, n in self.config.calibration_counts().items()}
        self.calibration_languages = [lang for lang, part in parts.items() for _ in range(len(part))]
        ids = torch.cat([part.ids for part in parts.values()])
        return TokenWindows(ids, torch.cat([part.n_bytes for part in parts.values()]))

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
            return TokenWindows(windows.ids[:nsamples], windows.n_bytes[:nsamples])
        name = f"calibration text for '{lang}'"
        if config.source == "mc4":
            docs = mc4_documents(lang, "train")
            return calibration_windows_from_documents(
                docs,
                self.tokenizer,
                nsamples,
                config.seqlen,
                config.seed,
                name=f"mC4 train for '{lang}'",
            )
        blocks = self._split(lang)[0]
        return calibration_windows(blocks, self.tokenizer, nsamples, config.seqlen, config.seed, name=name)

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
        """Languages of `val_dataloader()`, in order: dataloader_idx i is eval_language_order[i]."""
        return [lang for lang in self._eval_languages() if lang in self.evaluation]

    def calibration_dataloader(self) -> DataLoader:
        """Calibration ids in batches of data.batch_size, in a fixed order: LongTensor [b, seqlen]."""
        self._check_setup()
        assert self.calibration is not None
        return DataLoader(self.calibration.ids, batch_size=self.config.batch_size, shuffle=False)

    def evaluation_dataloaders(self) -> dict[str, DataLoader]:
        """Per language, batches of {"input_ids": LongTensor [b, seqlen], "n_bytes": LongTensor [b]}."""
        self._check_setup(calibration=False)
        return {
            lang: DataLoader(
                EvaluationDataset(self.evaluation[lang]),
                batch_size=self.config.eval_batch_size,
                shuffle=False,
            )
            for lang in self.eval_language_order
        }

    def val_dataloader(self) -> list[DataLoader]:
        loaders = self.evaluation_dataloaders()
        return [loaders[lang] for lang in self.eval_language_order]

    def _check_setup(self, calibration: bool = True) -> None:
        if not self._set_up:
            raise RuntimeError("PruningDataModule.setup() has not run yet")
        if calibration and self.calibration is None:
            raise RuntimeError("no calibration windows yet: data.source generated needs set_calibration()")
