"""Calibration and evaluation data: text per language -> token windows -> a LightningDataModule."""

from lp_prune.data.datamodule import PruningDataModule
from lp_prune.data.text import (
    MC4_DATASET,
    PACKAGED_CODES,
    cut_blocks,
    file_documents,
    mc4_documents,
    packaged_documents,
    packaged_text_dir,
    split_documents,
    strip_generator_reply,
)
from lp_prune.data.windows import (
    TokenWindows,
    bos_ids,
    calibration_windows,
    calibration_windows_from_documents,
    check_seqlen,
    count_predicted_bytes,
    evaluation_windows,
    evaluation_windows_from_documents,
    load_token_file,
    tokenize_stream,
)

__all__ = [
    "MC4_DATASET",
    "PACKAGED_CODES",
    "PruningDataModule",
    "TokenWindows",
    "bos_ids",
    "calibration_windows",
    "calibration_windows_from_documents",
    "check_seqlen",
    "count_predicted_bytes",
    "cut_blocks",
    "evaluation_windows",
    "evaluation_windows_from_documents",
    "file_documents",
    "load_token_file",
    "mc4_documents",
    "packaged_documents",
    "packaged_text_dir",
    "split_documents",
    "strip_generator_reply",
    "tokenize_stream",
]
