"""gum-mcp: a local-first General User Model served over the Model Context Protocol."""

__version__ = "0.1.0"
