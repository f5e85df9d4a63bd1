"""A box interaction through ``imis-lite serve``, as napari's or 3D Slicer's nnInteractive plugin sends it.

The same object as ``cli_3d`` (the shipped CT's largest organ): the server is started on 127.0.0.1, the image
uploaded once, then a 2D box of the organ's extent on its middle slice is timed from request to the changed
sub-volume in the client's buffer, beside the CLI's whole run for the same object.
"""

from __future__ import annotations

import importlib.util
import time

import nibabel as nib
import numpy as np

from imis_lite.demo import sample_path
from imis_lite.metrics import dice

from .cli_3d import largest_organ_box
from .local_server import running_server

NEEDED = ("fastapi", "uvicorn", "blosc2", "nnInteractive", "httpx")


def serve_3d(model: str, threads: int) -> dict:
    """Seconds of set_image and of the box interaction (best of 2 boxes), and the organ's Dice. The volume goes
    as napari and 3D Slicer send it, (z, y, x)."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        return {"skipped": f"needs the server extra and nninteractive-client ({', '.join(missing)} missing)"}
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

    image = nib.load(sample_path("example_ct_sm.nii.gz"))
    data = np.asarray(image.dataobj, dtype=np.float32).transpose(2, 1, 0)
    truth = np.asarray(nib.load(sample_path("example_seg.nii.gz")).dataobj)
    label, (x0, y0, z0, x1, y1, z1) = largest_organ_box(truth)
    truth = truth.transpose(2, 1, 0)
    with running_server(None, "-q", "--model", model, "--threads", str(threads)) as url:
        with nnInteractiveRemoteInferenceSession(url) as session:
            started = time.perf_counter()
            session.set_image(data[None], {"spacing": [float(s) for s in image.header.get_zooms()][::-1]})
            upload = time.perf_counter() - started
            buffer = np.zeros(data.shape, np.uint8)
            session.set_target_buffer(buffer)
            middle = (z0 + z1) // 2
            times = []
            for _ in range(2):  # the second box meets the embeddings the first one cached
                session.reset_interactions()
                started = time.perf_counter()
                session.add_bbox_interaction([[middle, middle + 1], [y0, y1 + 1], [x0, x1 + 1]], include_interaction=True)
                times.append(time.perf_counter() - started)
            score = dice(buffer == 1, truth == label)
    return {"set_image_s": round(upload, 2), "box_s": round(times[0], 2), "box_cached_s": round(times[1], 2),
            "dice": round(float(score), 4), "label": label}
