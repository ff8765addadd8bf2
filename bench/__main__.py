"""``python3 -m bench`` (from the repository's root): every benchmark of issue #7, written to BENCHMARKS.md.

The same as ``bench/run``; see ``bench/harness.py`` (``python3 -m bench --help``) for what is measured and how.
"""

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
