"""Start a new domain plugin in one step: ``python plugins/_template/create.py <domain>``.

Writes ``plugins/<domain>/`` (or ``--out DIR/<domain>``) from ``skeleton/``: a distribution
``difforge-<domain>`` with its entry point, a procedural world with exact ground truth (waves of
known frequency), an analytic reward, a dataset, a recipe that trains on it and tests that pass.
Replace the world with the domain's own; keep the layout (see docs/architecture.md).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

SKELETON = Path(__file__).resolve().parent / "skeleton"
PLACEHOLDER = "__domain__"


def create(domain: str, out: Path) -> Path:
    """Copy the skeleton to ``out/<domain>`` with the placeholder replaced; returns the folder."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", domain):
        raise SystemExit(f"create.py: domain {domain!r} must be lower-case letters and digits, starting with a letter")
    target = out / domain
    if target.exists():
        raise SystemExit(f"create.py: {target} already exists; nothing was written")
    for source in sorted(SKELETON.rglob("*")):
        if source.is_dir() or "__pycache__" in source.parts:
            continue
        relative = Path(str(source.relative_to(SKELETON)).replace(PLACEHOLDER, domain))
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(source.read_text().replace(PLACEHOLDER, domain))
    return target


def main() -> None:
    """Parse the arguments and write the plugin."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("domain", help="the domain's name, e.g. video (distribution difforge-video)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the folder that receives <domain>/ (default: plugins/)")
    args = parser.parse_args()
    target = create(args.domain, args.out)
    print(f"wrote {target}; install it with `make venv` (or pip install -e {target}) and run `make test`")


if __name__ == "__main__":
    main()
