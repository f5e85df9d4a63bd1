"""Every DICOM file pydicom and pydicom-data ship, through ``imis-lite info`` and ``imis-lite segment``.

    python -m imis_lite.benchmarks.dicom_sweep --out bench-out/dicom-sweep [--every N]

Each file either works (``info`` prints, ``segment`` with a box over the middle half of its first slice writes
a mask) or is refused in one line with exit code 1 and nothing at the output path; anything else (a traceback,
another exit code, a half-written file) is a failure of ours. The table groups the outcomes by what refused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path


def dicom_test_files() -> list[Path]:
    """pydicom's own test files and, when installed, pydicom-data's: the ones that parse as DICOM at all."""
    import pydicom
    from pydicom.data import get_testdata_files

    files = []
    for name in sorted(set(get_testdata_files())):
        path = Path(name)
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM (dumps, JSON, ICC profiles...): not part of the sweep
            continue
        files.append(path)
    return files


def _middle_box(info_lines: list[str]) -> list[str] | None:
    """``--box`` over the middle half of the image (with ``--slice`` on the middle slice of a volume)."""
    for line in info_lines:
        if line.startswith("shape:"):
            sizes = dict(part.split("=") for part in line.split()[1:] if "=" in part and part.split("=")[1].isdigit())
            x, y = int(sizes.get("x", sizes.get("width", 0))), int(sizes.get("y", sizes.get("height", 0)))
            if x < 2 or y < 2:
                return None
            box = [str(x // 4), str(y // 4), str(max(x // 4, 3 * x // 4 - 1)), str(max(y // 4, 3 * y // 4 - 1))]
            return box + (["--slice", str(int(sizes["z"]) // 2)] if "z" in sizes else [])
    return None


def _cli(*arguments: str) -> tuple[int, str, str]:
    """``imis-lite ARGUMENTS`` in a fresh process, as a user runs it: exit code, stdout, stderr."""
    done = subprocess.run([sys.executable, "-m", "imis_lite.cli", *arguments], capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


def sweep_file(path: Path, folder: Path) -> dict:
    code, out_text, err_text = _cli("info", str(path))
    lines = (out_text + err_text).strip().splitlines()
    record = {"file": path.name, "info_exit": code, "info": lines[-1] if lines else ""}
    clean = code in (0, 1) and "Traceback" not in err_text and (code == 0 or len(err_text.strip().splitlines()) == 1)
    box = _middle_box(out_text.splitlines()) if code == 0 else None
    out = folder / f"{path.name}.seg.nii.gz"
    if box is None:
        record.update(segment_exit=None, segment="(not segmented: info refused it)")
    else:
        code, _, err_text = _cli("-q", "segment", str(path), "--box", *box, "-o", str(out))
        lines = err_text.strip().splitlines()
        record.update(segment_exit=code, segment=lines[-1] if lines else "wrote a mask")
        clean &= code in (0, 1) and "Traceback" not in err_text
        clean &= out.is_file() if code == 0 else (not out.exists() and len(lines) == 1)
    record["clean"] = bool(clean)
    return record


def render(records: list[dict]) -> str:
    outcome = Counter(("segmented" if r["segment_exit"] == 0 else
                       f"refused: {r['segment'].split(':', 2)[-1].strip()[:70]}" if r["segment_exit"] == 1 else
                       f"info refused: {r['info'].split(':', 2)[-1].strip()[:70]}" if r["info_exit"] == 1 else
                       "other") for r in records)
    lines = ["| outcome | files |", "|---|---:|"] + [f"| {name} | {count} |" for name, count in outcome.most_common()]
    unclean = [r["file"] for r in records if not r["clean"]]
    lines += ["", f"{len(records)} files, {len(records) - len(unclean)} clean" + (f"; not clean: {', '.join(unclean)}" if unclean else "")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every", type=int, default=1, help="sweep every N-th file only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        records = [sweep_file(path, Path(tmp)) for path in dicom_test_files()[:: args.every]]
    (args.out / "dicom_sweep.json").write_text(json.dumps(records, indent=1))
    table = render(records)
    (args.out / "dicom_sweep.md").write_text(table + "\n")
    print(table)
    return 0 if all(r["clean"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
