"""Run by torchrun in tests/suites/test_end_to_end.py: a 2-process DDP training run on generated images."""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from longtail.data.bundle import folder_bundle
from longtail.training.loop import TrainConfig, train


def main(data: str, out: str) -> None:
    bundle = folder_bundle(data, image_size=16, seed=0)
    result = train(
        TrainConfig(
            strategy="class_balanced+focal:crt[epochs=1]",  # a second stage too
            model="small_cnn",
            epochs=2,
            batch_size=8,
            num_workers=0,
            progress=False,
        ),
        bundle,
        out,
    )
    rank = dist.get_rank()
    (Path(out) / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "world": dist.get_world_size(),
                "summary": result.test.summary,
                "stages": [r["stage"] for r in result.history],
            }
        )
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
