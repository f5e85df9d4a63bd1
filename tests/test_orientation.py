"""The same CT stored any way segments the same: volumes are segmented in RAS+ and mapped back exactly.

The shipped CT (RAS as stored) is written in 12 storages (all 8 flips of its axes, and the slice axis first or
x and y swapped with some flips), each a NIfTI whose affine says the same world; the liver's 3D box is given in
that file's own voxel indices, and the CLI's output, reopened with nibabel and brought back to the original grid
through its affine, must agree with the as-stored answer.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from imis_lite.cli.main import main
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from imis_lite.demo import sample_path
from imis_lite.metrics import dice
from imis_lite.orientation import Reorientation

LIVER_BOX = ((41, 25, 8), (105, 86, 21))  # the README's liver box on 14 of its 30 slices: the test's time
FLIPS = list(itertools.product((1, -1), repeat=3))
STORAGES = [((0, 1, 2), f) for f in FLIPS] + [((2, 0, 1), (1, 1, 1)), ((2, 0, 1), (-1, 1, -1)),
                                              ((1, 0, 2), (1, 1, 1)), ((1, 0, 2), (1, -1, -1))]


def _store(image, order, flips, path):
    """``image`` rewritten with its axes reordered and flipped, the affine kept true to the world."""
    ornt = np.array([[order[axis], flips[axis]] for axis in range(3)], float)
    data = apply_orientation(np.asanyarray(image.dataobj), ornt)
    affine = image.affine @ inv_ornt_aff(ornt, image.shape)
    nib.save(nib.Nifti1Image(data, affine), path)
    return ornt


def _box_in(ornt, shape):
    corners = []
    for corner in LIVER_BOX:
        out = [0, 0, 0]
        for axis, (target, direction) in enumerate(ornt):
            out[int(target)] = corner[axis] if direction > 0 else shape[axis] - 1 - corner[axis]
        corners.append(out)
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    return [*map(int, low), *map(int, high)]


def _segment(path, box, out):
    result = CliRunner().invoke(main, ["segment", str(path), "--box", *map(str, box), "-o", str(out),
                                       "--model", "effvit-s-hr", "--threads", "2", "-q"])
    assert result.exit_code == 0, result.output
    return nib.load(str(out))


def test_every_storage_of_the_ct_gives_the_same_liver(tmp_path):
    source = nib.load(str(sample_path("example_ct_sm.nii.gz")))
    truth = np.asarray(nib.load(str(sample_path("example_seg.nii.gz"))).dataobj) == 5
    stored = _segment(sample_path("example_ct_sm.nii.gz"), [*LIVER_BOX[0], *LIVER_BOX[1]], tmp_path / "stored.nii.gz")
    reference = np.asarray(stored.dataobj) == 1
    z0, z1 = LIVER_BOX[0][2], LIVER_BOX[1][2] + 1
    assert dice(reference[:, :, z0:z1], truth[:, :, z0:z1]) > 0.75 and not reference[:, :, :z0].any()
    for number, (order, flips) in enumerate(STORAGES):
        path = tmp_path / f"variant{number}.nii.gz"
        ornt = _store(source, order, flips, path)
        written = _segment(path, _box_in(ornt, source.shape), tmp_path / f"mask{number}.nii.gz")
        assert np.allclose(written.affine, nib.load(str(path)).affine)  # the mask carries its input's geometry
        back = apply_orientation(np.asarray(written.dataobj), ornt_transform(io_orientation(written.affine),
                                                                             io_orientation(source.affine)))
        assert back.shape == truth.shape
        assert dice(back == 1, reference) >= 0.995, (order, flips)


@pytest.mark.parametrize("order, flips", STORAGES)
def test_reorientation_maps_arrays_and_indices_there_and_back(order, flips):
    shape = (5, 7, 9)
    ornt = np.array([[order[axis], flips[axis]] for axis in range(3)], float)
    stored = apply_orientation(np.arange(np.prod(shape)).reshape(shape), ornt)
    affine = inv_ornt_aff(ornt, shape)  # an affine that undoes the storage: RAS+ is the original array
    turn = Reorientation.of(affine, stored.shape)
    canonical = turn.array(stored)
    assert np.array_equal(canonical, np.arange(np.prod(shape)).reshape(shape))
    assert np.array_equal(turn.back(canonical), stored)
    voxel = (1, 2, 3)
    landed = tuple(int(v) for v in turn.index(voxel))
    assert canonical[landed] == stored[voxel]
