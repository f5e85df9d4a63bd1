"""napari with the `napari-nninteractive` plugin segments the shipped CT through `imis-lite serve`, headless.

What a user does, in a real viewer on a virtual X screen (Xvfb, started and stopped here; napari's canvas needs
OpenGL, which Qt's offscreen platform does not give): open the NIfTI with the plugin's own reader
(napari-nifti), open the nnInteractive widget (a client-only install is Remote-only), type the server URL and
key, press Initialize, pick the BBox tool and add a rectangle on the liver's middle slice. The rectangle goes
into the plugin's box layer by ``Shapes.add``, the call napari's rectangle tool makes at the end of a drag;
everything after it (the plugin's event, its client, our server, the label layer) is the real path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from imis_lite.benchmarks.local_server import running_server

from imis_lite.demo import sample_path
from imis_lite.metrics import dice

KEY = "napari-test-key"
LIVER = 5
# One tight 2D box on the middle slice, propagated up and down by the server: 0.830 with the release-4 student
# (release 3: 0.763; 0.740 with the rectangle's corners on voxel centres, a box one voxel short; 0.714 while the
# server pictured napari's (z, y, x) slices transposed; 0.705 with release 2).
DICE_FLOOR = 0.81


@pytest.fixture(scope="session")
def virtual_display(tmp_path_factory):
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("the napari test needs Xvfb (Debian package xvfb, and libxcb-icccm4 libxcb-keysyms1 "
                           "libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 for Qt's xcb)")
    read, write = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as announced:
        display = announced.readline().strip()
    if not display:
        server.kill()
        raise RuntimeError("Xvfb did not announce a display")
    settings = tmp_path_factory.mktemp("qt-settings")
    previous = {name: os.environ.get(name) for name in ("DISPLAY", "QT_QPA_PLATFORM", "XDG_CONFIG_HOME", "NAPARI_CONFIG")}
    os.environ.update(DISPLAY=f":{display}", QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=str(settings),
                      NAPARI_CONFIG=str(settings / "napari.yaml"))
    yield f":{display}"
    _close_the_qt_application()  # Qt exits the process when its X server goes away under a live application
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.terminate()
    server.wait(timeout=30)


def _close_the_qt_application() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    app.closeAllWindows()
    app.processEvents()
    from PyQt5 import sip

    sip.delete(app)


@pytest.fixture(scope="session")
def qapp_args(virtual_display):
    """pytest-qt builds its QApplication from this: so only once the virtual screen is there."""
    return ["imis-lite-napari-test"]


def test_the_napari_plugin_draws_a_box_and_gets_the_liver_from_imis_lite_serve(qtbot, tmp_path):
    import napari
    from napari_nifti._reader import reader_function
    from napari_nninteractive.widget_main import nnInteractiveWidget
    from qtpy.QtCore import Qt

    ct, reference = str(sample_path("example_ct_sm.nii.gz")), str(sample_path("example_seg.nii.gz"))
    truth = reader_function(reference)[0][0] == LIVER  # the same (S, A, R) array the viewer shows
    with running_server(KEY, "--threads", "2") as url:
        viewer = napari.Viewer(show=False)
        viewer.window.resize(1500, 900)
        widget = nnInteractiveWidget(viewer)
        try:
            [image] = viewer.open(ct, plugin="napari-nifti")
            assert image.data.shape == truth.shape
            viewer.window.add_dock_widget(widget, name="nnInteractive")
            assert widget._remote_mode  # client-only install: the server is the model
            widget.server_url_edit.setText(url)
            widget.api_key_edit.setText(KEY)
            widget.image_selection.setCurrentText(image.name)
            qtbot.mouseClick(widget.init_button, Qt.LeftButton)
            qtbot.waitUntil(lambda: widget._remote_connected and widget._upload_dialog is None
                            and widget.label_layer_name in viewer.layers, timeout=120_000)
            assert "imis-lite" in widget.session.license

            qtbot.mouseClick(widget.interaction_button.buttons[1], Qt.LeftButton)  # the BBox tool
            assert widget.bbox_layer_name in viewer.layers
            slices = np.flatnonzero(truth.any(axis=(1, 2)))
            middle = int(slices[len(slices) // 2])
            rows, columns = np.nonzero(truth[middle])
            y0, y1, x0, x1 = rows.min(), rows.max(), columns.min(), columns.max()
            viewer.dims.set_current_step(0, middle)
            # drawn around the liver's voxels, as a user drags a box around what they see: edges half a voxel out
            top, left, bottom, right = y0 - 0.5, x0 - 0.5, y1 + 0.5, x1 + 0.5
            corners = np.array([[middle, top, left], [middle, top, right], [middle, bottom, right], [middle, bottom, left]])
            viewer.layers[widget.bbox_layer_name].add(corners, shape_type="rectangle")
            label = viewer.layers[widget.label_layer_name]
            qtbot.waitUntil(lambda: label.data.any(), timeout=120_000)

            segmented = np.asarray(label.data) > 0
            assert segmented.shape == truth.shape
            assert dice(segmented, truth) >= DICE_FLOOR
            assert segmented[slices[0]].any() and segmented[slices[-1]].any()  # propagated both ways to the ends
            assert not segmented[middle, : y0 - 3].any() and not segmented[middle, y1 + 4:].any()  # inside its box

            shot = Path(os.environ.get("IMIS_LITE_NAPARI_SCREENSHOT", tmp_path / "napari.png"))
            viewer.reset_view()
            picture = viewer.screenshot(str(shot), canvas_only=False)
            assert picture.shape[0] > 500 and picture.std() > 10  # a drawn window, not a black frame
        finally:
            widget._release_session()
            viewer.close()
