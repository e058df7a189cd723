"""Test aid: `lp-prune` that waits to be killed once layer N is checkpointed (tests/test_reliability.py).

python tests/hold_after_layer.py N run --model.name ... --out RUN_DIR
"""

import sys
import time

from lp_prune.calibration.checkpoint import LayerCheckpoint
from lp_prune.cli import main


def hold_after(layer: int) -> None:
    save = LayerCheckpoint.save

    def save_then_hold(self, result):
        save(self, result)
        if result.layer == layer:
            # Short naps, as a real run's main thread returns to Python between operations: a signal the
            # kernel hands to another thread (W&B's, torch's) only sets a flag that the main thread reads
            # when it next runs Python, and one long sleep would never read it.
            for _ in range(36_000):
                time.sleep(0.1)

    LayerCheckpoint.save = save_then_hold


if __name__ == "__main__":
    hold_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
