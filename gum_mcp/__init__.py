"""gum-mcp: a local-first General User Model served over the Model Context Protocol."""

__version__ = "0.1.0"

import os as _os

# numpy's OpenBLAS defaults to a thread per core; for the small matrices of one MiniLM query that
# costs more than it gains (seen here: 10-20% of single queries took 0.1-0.7 s instead of ~6 ms on
# 2 cores). It must be set before numpy loads; a value the user set wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
