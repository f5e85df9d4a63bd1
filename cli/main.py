"""The ``imis-lite`` command: parses, reports, and leaves the work to the library.

Runtime modules are imported inside each command so that ``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from imis_lite import options
from imis_lite._version import __version__

NUMBER_LIST_OPTIONS = ("--box", "--point", "--neg-point")
GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose", "--debug")
#: the embedding cache of one ``segment`` job (32 slices of a 256x64x64 embedding)
JOB_CACHE_BYTES = 128 << 20


def hoist_global_flags(args: list[str]) -> list[str]:
    """``imis-lite segment scan.nii.gz --box ... -q`` -> ``imis-lite -q segment ...``: the group's flags are
    accepted after the subcommand too, where users type them; moved in front, click parses them as the group's."""
    flags = [arg for arg in args if arg in GLOBAL_FLAGS]
    return flags + [arg for arg in args if arg not in GLOBAL_FLAGS]


def join_number_lists(args: list[str]) -> list[str]:
    """``--box 1 2 3 4`` -> ``--box 1,2,3,4``: click options take a fixed count, prompts take 4 or 6 (2 or 3)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in NUMBER_LIST_OPTIONS:
            numbers = []
            while i + 1 < len(args) and _is_number(args[i + 1]):
                numbers.append(args[i + 1])
                i += 1
            if numbers:
                out.append(",".join(numbers))
        i += 1
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_numbers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[list[float]]:
    parsed = []
    for value in values:
        try:
            parsed.append([float(v) for v in value.replace(",", " ").split()])
        except ValueError:
            raise click.BadParameter(f"'{value}' is not a list of numbers") from None
    return parsed


class ImisLiteGroup(click.Group):
    """Turns library errors into one line on stderr and exit code 1 (``--debug`` keeps the traceback)."""

    def main(self, args=None, *rest, **kwargs):
        if args is None:
            args = sys.argv[1:]
        return super().main(join_number_lists(hoist_global_flags(list(args))), *rest, **kwargs)

    def invoke(self, ctx: click.Context):
        from imis_lite.errors import ImisLiteError

        try:
            return super().invoke(ctx)
        except (ImisLiteError, OSError) as error:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:  # a bug of ours meeting an input nobody tried: still one line, and the way to more
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: internal error ({type(error).__name__}: {error}); rerun with --debug for the traceback",
                       err=True)
            sys.exit(1)


def runtime_options(command):
    """--model/--engine/--precision/--arithmetic/--device/--threads, shared by every command that runs a model."""
    from imis_lite.bundle import DEFAULT_MODEL

    decorators = [
        click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Bundle name (see `imis-lite models`) or folder."),
        click.option("--engine", type=click.Choice(options.ENGINES), default=options.DEFAULT_ENGINE, show_default=True),
        click.option("--precision", type=click.Choice(options.PRECISIONS), default=options.DEFAULT_PRECISION, show_default=True),
        click.option("--arithmetic", type=click.Choice(options.ARITHMETICS), default=options.DEFAULT_ARITHMETIC, show_default=True,
                     help="OpenVINO only: bf16 / f16 on CPUs that compute them natively (faster, masks a little "
                          "different); f32 with a notice elsewhere."),
        click.option("--device", type=click.Choice(options.DEVICES, case_sensitive=False), default=options.DEFAULT_DEVICE,
                     show_default=True,
                     help="Anything but CPU falls back to the CPU with a notice when absent."),
        click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: the engine's choice)."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@click.group(cls=ImisLiteGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imis-lite")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("-v", "--verbose", is_flag=True, help="More detail on stderr.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(quiet: bool, verbose: bool, debug: bool) -> None:
    """Interactive medical image segmentation on a laptop CPU, offline."""
    level = logging.ERROR if quiet else logging.INFO if verbose or debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    if not (verbose or debug):  # the readers' own chatter (pydicom on odd tags) would bury our one line
        import warnings

        warnings.simplefilter("ignore")
        for handler in logging.getLogger().handlers:  # pydicom resets its own logger's level when imported
            handler.addFilter(lambda record: not (record.name.startswith("pydicom") and record.levelno < logging.ERROR))
    click.get_current_context().obj = {"quiet": quiet}


@main.command()
def models() -> None:
    """List the model bundles found, their size on disk and variants."""
    from imis_lite.bundle import DEFAULT_MODEL, available_models, load_bundle

    for name, folder in sorted(available_models().items()):
        bundle = load_bundle(str(folder))
        size = sum(entry["bytes"] for entry in bundle.manifest["files"].values())
        variants = "; ".join(f"{engine}: {', '.join(bundle.precisions(engine))}" for engine in bundle.manifest["variants"])
        default = " (default)" if name == DEFAULT_MODEL else ""
        click.echo(f"{name}{default}  {size / 1e6:.1f} MB  {variants}  [{folder}]")


@main.command()
@click.option("--path", "name", default=None, help="Print only the path of this sample (for scripts).")
def samples(name: str | None) -> None:
    """List the sample scans shipped with imis-lite (see their README for credits)."""
    from imis_lite.demo import sample_path

    folder = sample_path("README.md").parent
    if name is not None:
        if not (folder / name).is_file():
            raise click.BadParameter(f"no sample named {name}", param_hint="--path")
        click.echo(folder / name)
        return
    for path in sorted(folder.glob("*")):
        if path.suffix in (".npz", ".gz"):
            click.echo(path)


@main.command()
@runtime_options
def demo(model: str, engine: str, precision: str, arithmetic: str, device: str, threads: int | None) -> None:
    """Segment the shipped CT sample from its reference boxes and print Dice per organ."""
    from imis_lite.demo import run_demo

    for line in run_demo(model=model, engine=engine, precision=precision, arithmetic=arithmetic, device=device,
                         threads=threads):
        click.echo(line)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--volume", type=click.IntRange(0), default=None, help="Volume of a 4D NIfTI (0-based).")
@click.option("--series", default=None, help="SeriesInstanceUID, when a DICOM folder holds several series.")
def info(input_path: Path, volume: int | None, series: str | None) -> None:
    """Shape, spacing, orientation, modality and value range: what you need to choose a box."""
    from imis_lite.io import read_scan
    from imis_lite.report import describe_scan

    for line in describe_scan(read_scan(input_path, volume=volume, series=series)):
        click.echo(line)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Label map to write (.nii.gz, .nii, .png, .npz, .dcm for DICOM SEG); default INPUT_seg.*")
@click.option("--box", "boxes", multiple=True, callback=parse_numbers,
              help="x0 y0 x1 y1 (with --slice) or x0 y0 z0 x1 y1 z1; repeat for several objects.")
@click.option("--slice", "slices", type=click.IntRange(0), multiple=True,
              help="Slice z for a 2D box on a volume: once for all boxes, or once per --box in order.")
@click.option("--point", "points", multiple=True, callback=parse_numbers,
              help="Foreground click x y [z]; with a 3D box, on any slice of its z-range. Clicks correct the box's "
                   "mask one by one (--point ones first, in order), each changing it near itself only (without a "
                   "box, the model's click refiner answers them, where it ships one); when the model will not give "
                   "the clicked pixel that side, the click strokes the pixels of its grey level around it, up to the "
                   "mask's edge.")
@click.option("--neg-point", "neg_points", multiple=True, callback=parse_numbers,
              help="Background click x y [z]; with a 3D box, on any slice of its z-range.")
@click.option("--prompts", "prompt_file", type=click.Path(path_type=Path), default=None,
              help="JSON file of objects (see README) instead of --box/--point.")
@click.option("--coords", type=click.Choice(["voxel", "world"]), default="voxel", show_default=True,
              help="voxel: 0-based indices in file order; world: mm through the affine.")
@click.option("--window", default=None, help="CT window: L,W or a preset (soft-tissue, lung, bone, brain, liver).")
@click.option("--modality", default=None, help="Override the modality (CT uses windows, others percentiles).")
@click.option("--volume", type=click.IntRange(0), default=None, help="Volume of a 4D NIfTI (0-based).")
@click.option("--series", default=None, help="SeriesInstanceUID, when a DICOM folder holds several series.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@runtime_options
def segment(input_path: Path, output: Path | None, boxes, slices, points, neg_points, prompt_file, coords,
            window, modality, volume, series, force, model, engine, precision, arithmetic, device, threads) -> None:
    """Segment INPUT from box and click prompts and write a label map with its geometry."""
    import time

    from imis_lite.intensity import parse_window
    from imis_lite.io import check_output, default_output, read_scan, write_labels
    from imis_lite.job import RawObject, read_prompt_file, resolve, segment_scan
    from imis_lite.predictor import Segmenter

    started = time.perf_counter()
    if prompt_file is not None:
        if boxes or points or neg_points:
            raise click.UsageError("give prompts either with --prompts or with --box/--point, not both")
        raw_objects, file_coords = read_prompt_file(prompt_file)
        coords = file_coords or coords
    elif boxes:
        if (points or neg_points) and len(boxes) > 1:
            raise click.UsageError("clicks with several boxes are ambiguous: use --prompts FILE.json")
        if len(slices) not in (0, 1, len(boxes)):
            raise click.UsageError(f"{len(slices)} --slice for {len(boxes)} --box: give one, or one per box")
        per_box = list(slices) if len(slices) == len(boxes) else [slices[0] if slices else None] * len(boxes)
        raw_objects = [RawObject(box, z, list(points), list(neg_points)) for box, z in zip(boxes, per_box)]
    elif points or neg_points:
        raw_objects = [RawObject(None, slices[0] if slices else None, list(points), list(neg_points))]
    else:
        raise click.UsageError("give at least one --box, --point or --prompts")
    window_values = parse_window(window) if window else None
    scan = read_scan(input_path, volume=volume, series=series)
    prompts = [resolve(scan, raw, world=coords == "world") for raw in raw_objects]
    output = output or default_output(scan)
    check_output(output, scan, force)
    # one job, every prompt known: propagation visits each slice once, so a small cache is enough
    segmenter = Segmenter(model, engine=engine, precision=precision, arithmetic=arithmetic, device=device, threads=threads,
                          cache_bytes=JOB_CACHE_BYTES)
    logging.getLogger("imis_lite").info("%s", segmenter.describe())
    quiet = (click.get_current_context().find_root().obj or {}).get("quiet", False)
    if not quiet and any(p.box is None for p in prompts) and not segmenter.takes_clicks_alone:
        click.echo(f"warning: {segmenter.bundle.name}'s decoder was trained on boxes: clicks without a --box usually "
                   "give an (almost) empty mask; draw a box, or use a model that takes a click first", err=True)
    with click.progressbar(length=_slice_budget(scan, prompts), label="segmenting", file=sys.stderr, hidden=quiet) as bar:
        labels = segment_scan(segmenter, scan, prompts, modality=modality, window=window_values,
                              on_slice=lambda: bar.update(1))
    write_labels(output, scan, labels, force=force)
    found = [int((labels == i).sum()) for i in range(1, len(prompts) + 1)]
    if not quiet:
        click.echo(f"wrote {output}: {len(prompts)} object(s), voxels {found}, {time.perf_counter() - started:.1f} s", err=True)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
              add_help_option=False)
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Accuracy and speed of every model, engine and precision (`imis-lite bench --help` for its options)."""
    import importlib.util

    from imis_lite.errors import InputError

    missing = [name for name in ("matplotlib", "surface_distance") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"imis-lite bench needs the bench extra ({', '.join(missing)} missing): "
                         "pip install 'imis-lite[bench]'")
    from imis_lite.benchmarks.__main__ import main as run_benchmarks

    sys.exit(run_benchmarks(ctx.args, prog="imis-lite bench"))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --api-key.")
@click.option("--port", type=click.IntRange(1, 65535), default=1527, show_default=True)
@click.option("--api-key", envvar="IMIS_LITE_API_KEY", default=None,
              help="Clients must send 'Authorization: Bearer KEY' (env IMIS_LITE_API_KEY).")
@click.option("--max-sessions", type=click.IntRange(1), default=4, show_default=True, help="Leases held at once.")
@click.option("--idle-timeout", type=click.FloatRange(1), default=600.0, show_default=True,
              help="Seconds without an interaction before a lease ends.")
@click.option("--max-body-mb", type=click.IntRange(1), default=1024, show_default=True, help="Largest request body.")
@click.option("--max-image-voxels", type=click.IntRange(1), default=512 * 512 * 1024, show_default=True,
              help="Largest image a client may send.")
@runtime_options
def serve(host: str, port: int, api_key: str | None, max_sessions: int, idle_timeout: float, max_body_mb: int,
          max_image_voxels: int, model: str, engine: str, precision: str, arithmetic: str, device: str,
          threads: int | None) -> None:
    """Serve nnInteractive's remote protocol: napari and 3D Slicer segment through imis-lite (server extra)."""
    import importlib.util

    from imis_lite.errors import InputError

    missing = [name for name in ("fastapi", "uvicorn", "blosc2") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"imis-lite serve needs the server extra ({', '.join(missing)} missing): "
                         "pip install 'imis-lite[server]'")
    if host not in LOOPBACK and not api_key:
        raise click.UsageError(f"binding {host} exposes the server to the network: give --api-key (or bind 127.0.0.1)")
    import uvicorn

    from imis_lite.predictor import Segmenter
    from imis_lite.server.app import ServerLimits, create_app

    segmenter = Segmenter(model, engine=engine, precision=precision, device=device, threads=threads, arithmetic=arithmetic)
    limits = ServerLimits(max_body_bytes=max_body_mb << 20, max_image_voxels=max_image_voxels, max_sessions=max_sessions,
                          idle_timeout_s=idle_timeout, liveness_timeout_s=min(60.0, idle_timeout))
    click.echo(f"imis-lite serve: {segmenter.describe()} on http://{host}:{port}"
               + (" (API key required)" if api_key else ""), err=True)
    uvicorn.run(create_app(segmenter, api_key, limits), host=host, port=port, log_level="warning")


def _slice_budget(scan, prompts) -> int:
    """Most slices the job can touch: the progress bar's length."""
    return sum((p.z_range[1] - p.z_range[0] + 1) if p.z_range else 1 for p in prompts)
