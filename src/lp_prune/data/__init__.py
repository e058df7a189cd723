"""Calibration and evaluation data: text per language -> token windows -> a LightningDataModule."""

from lp_prune.data.datamodule import PruningDataModule
from lp_prune.data.record import calibration_record, write_calibration_files
from lp_prune.data.reference import REFERENCE_RECIPES, load_reference_windows
from lp_prune.data.text import (
    MC4_CONFIGS,
    MC4_DATASET,
    PACKAGED_CODES,
    MC4Stream,
    cut_blocks,
    file_documents,
    mc4_config,
    mc4_documents,
    open_mc4,
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
    "MC4_CONFIGS",
    "MC4_DATASET",
    "PACKAGED_CODES",
    "REFERENCE_RECIPES",
    "MC4Stream",
    "PruningDataModule",
    "TokenWindows",
    "bos_ids",
    "calibration_record",
    "calibration_windows",
    "calibration_windows_from_documents",
    "check_seqlen",
    "count_predicted_bytes",
    "cut_blocks",
    "evaluation_windows",
    "evaluation_windows_from_documents",
    "file_documents",
    "load_reference_windows",
    "load_token_file",
    "mc4_config",
    "mc4_documents",
    "open_mc4",
    "packaged_documents",
    "packaged_text_dir",
    "split_documents",
    "strip_generator_reply",
    "tokenize_stream",
    "write_calibration_files",
]
