"""gum-mcp: a local-first General User Model served over the Model Context Protocol."""

__version__ = "0.1.0"

import os as _os

# numpy's OpenBLAS defaults to a thread per core; for the small matrices of one MiniLM query that
# costs more than it gains (seen here: 10-20% of single queries took 0.1-0.7 s instead of ~6 ms on
# 2 cores). It must be set before numpy loads; a value the user set wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# onnxruntime (the embedding encoder's runtime; chromadb's too) collects telemetry on Linux and macOS since
# 1.32: importing it writes a device id and a queue of events under ~/.cache/Microsoft and uploads them to
# Microsoft (the process's executable path, OS, CPU, sessions made, inference counts). A local-first user model
# sends nothing anywhere the person did not configure. onnxruntime reads this once, when it is first imported,
# so it is set here, before any module of gum_mcp can import it; a value the user set wins.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
