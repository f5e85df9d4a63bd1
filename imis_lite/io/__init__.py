"""Reading scans and writing label maps, keeping the input's geometry."""

from .readers import read_scan
from .scan import Scan
from .writers import check_output, default_output, write_labels

__all__ = ["Scan", "check_output", "default_output", "read_scan", "write_labels"]
