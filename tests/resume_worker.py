"""Runs a training config in its own process; with --hang-after N it stops making progress
after step N (so a test can SIGKILL it at a known point)."""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from difforge import load_config  # noqa: E402
from difforge.training import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--hang-after", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    def hang(trainer, step, logs):
        if args.hang_after is not None and step == args.hang_after:
            time.sleep(600)

    Trainer(load_config(args.config, args.overrides), callbacks=[hang]).fit()


if __name__ == "__main__":
    main()
