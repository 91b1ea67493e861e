"""How this environment's installed versions differ from a lock: `python .ci/lock_diff.py requirements/py3.11.txt`.

.ci/run runs it in the newest-versions leg's venv, so the log shows what the next `make upgrade` would change.
Markers are evaluated for this interpreter; packages the lock does not hold, or this venv lacks, are left out.
"""

import re
import sys
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def main(lock: str) -> int:
    changed = []
    with open(lock, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        if not re.match(r"^[A-Za-z0-9]", line):
            continue
        req = Requirement(line.strip())
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            continue
        if not req.specifier.contains(installed, prereleases=True):
            changed.append(f"  {canonicalize_name(req.name)}: {str(req.specifier).removeprefix('==')} -> {installed}")
    print(f"newest versions vs the lock {lock}: {len(changed)} differ")
    print("\n".join(sorted(changed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
