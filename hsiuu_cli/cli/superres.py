"""`hsiuu superres SCENE... --scale s`: sharpen cubes with a shipped or trained model (or bicubic)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cluster import splits_into_blocks
from .common import (
    click_errors, detail, emit_json, expand_inputs, info, input_stem, parse_creation_options, plan_outputs, progress, run_batch, warn,
)
from .options import (
    OUTPUT_DTYPES, CreationOptions, Device, Format, Inputs, Jobs, Json, NameTemplate, OutDir, Output, Overwrite, Scheduler, Seed,
)

DEFAULT_TEMPLATE = "{stem}_x{scale}{ext}"
FEW_BANDS = 10
"""Below this many bands a cube is multispectral, RGB or panchromatic, not hyperspectral: say so."""


def _default_extension(inputs: list[Path], format: str | None) -> str:
    from ..io import FORMAT_EXTENSIONS, GTIFF_SUFFIXES, format_name

    if format is not None:
        return FORMAT_EXTENSIONS.get(format_name(format), ".hdr")  # an unknown name fails when writing
    return ".tif" if all(p.suffix.lower() in GTIFF_SUFFIXES for p in inputs) else ".hdr"


def superres_command(
    inputs: Inputs,
    scale: Annotated[int, typer.Option("--scale", "-s", help="Up-sampling factor: 2, 3, 4 or 8 with a model; any integer ≥ 2 with bicubic.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE", help="Shipped model name, or a model file (.onnx, its card .json, or the path without extension); default: the shipped model that fits the scene.")] = None,
    method: Annotated[str, typer.Option("--method", help="model, or bicubic (the baseline).")] = "model",
    tile: Annotated[Optional[int], typer.Option("--tile", min=8, show_default=False, help="Tile side in LR pixels (default 64); memory grows with it, not with the scene.")] = None,
    device: Device = "auto",
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Scale the model's detail by a gain (0–1) fitted on the scene degraded once more, so a model that does not suit the sensor falls back towards bicubic.")] = True,
    adapt: Annotated[Optional[bool], typer.Option("--adapt/--no-adapt", show_default=False, help="Fine-tune the model on the scene itself first (pairs made by degrading the scene once more with its estimated blur); a check on held-back pairs picks the adapted, the unadapted or the bicubic result. Default: on where the scene is large enough (24 × scale LR pixels a side) and blurrier than the model's training pairs.")] = None,
    adapt_time: Annotated[Optional[float], typer.Option("--adapt-time", metavar="SECONDS", min=1.0, show_default=False, help="Most seconds of fine-tuning per scene (default: 60 per million LR pixels, at least 20).")] = None,
    denoise: Annotated[Optional[bool], typer.Option("--denoise/--no-denoise", show_default=False, help="Remove the scene's noise before the model (its spectra shrunk onto their signal subspace); the models sharpen noise as if it were detail. Default: where the median band SNR is estimated below 43 dB (20 or more good bands).")] = None,
    save_model: Annotated[Optional[Path], typer.Option("--save-model", metavar="DIR", help="Keep each adapted model in DIR (ONNX, weights and a model card); implies --adapt.")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", metavar="TYPE", help="Output data type (default: the input's; integer outputs are rounded and keep the scale factor).")] = None,
    output: Output = None,
    out_dir: OutDir = None,
    name: NameTemplate = None,
    format: Format = None,
    co: CreationOptions = None,
    overwrite: Overwrite = False,
    jobs: Jobs = 1,
    scheduler: Scheduler = None,
    seed: Seed = 0,
    json_output: Json = False,
) -> None:
    """Super-resolve hyperspectral cubes by an integer factor (UnmixingSR, tiled, ONNX on CPU).

    Shipped models: aviris_x2 (145-228 good bands) and aviris_x4 (145-247) for AVIRIS-like VNIR-SWIR cubes,
    agnostic_x2 and agnostic_x4 for any other band count or sensor. Without --model, the first that
    fits the scene is used.

    Examples:
      Sharpen a scene 4 times with the shipped model that fits it:
        hsiuu superres scene.hdr --scale 4 -o scene_x4.hdr
      Every cube of a folder, two at a time, into sharp/ as GeoTIFF:
        hsiuu superres 'cubes/*.hdr' -s 2 --out-dir sharp/ -f GTiff -j 2
    """
    import numpy as np

    from ..errors import HsiuuError, ModelError, ParameterError
    from ..io import check_creation_options, check_not_input, check_output, input_files, read_cube, write_cube
    from ..superres import choose_model, load_model
    from ..superres.inference import DEFAULT_TILE, super_resolve_cube
    from ..superres.registry import check_scale

    if method not in ("model", "bicubic"):
        raise typer.BadParameter(f"'{method}' is not a method (use model or bicubic)", param_hint="--method")
    if method == "bicubic" and model is not None:
        raise click_errors.UsageError("--model goes with --method model (bicubic uses no model)")
    if save_model is not None:
        if adapt is False:
            raise click_errors.UsageError("--save-model keeps an adapted model; it does not go with --no-adapt")
        adapt = True
    if method == "bicubic" and adapt:
        raise click_errors.UsageError("--adapt and --save-model go with --method model (bicubic has nothing to adapt)")
    if method == "bicubic" and denoise:
        raise click_errors.UsageError("--denoise goes with --method model (bicubic is the baseline, as it is)")
    if method == "model":
        check_scale(scale)
    elif scale < 2:
        raise ParameterError(f"scale must be an integer of at least 2, got {scale}")
    out_dtype = None
    if dtype is not None:
        if dtype.lower() not in OUTPUT_DTYPES:
            raise typer.BadParameter(f"'{dtype}' is not one of {', '.join(OUTPUT_DTYPES)}", param_hint="--dtype")
        out_dtype = np.dtype(dtype.lower())
    creation_options = parse_creation_options(co)
    paths = expand_inputs(inputs)
    template = None if name is None else name.replace("{scale}", str(scale))
    targets = plan_outputs(
        paths,
        output=output,
        out_dir=out_dir,
        template=template,
        default_template=DEFAULT_TEMPLATE.replace("{scale}", str(scale)),
        default_ext=_default_extension(paths, format),
    )
    requested = load_model(model) if (model is not None and method == "model") else None
    summaries: list[dict] = []

    def check(source: Path, target: Path) -> None:
        check_output(target, overwrite, format=format)
        check_not_input(input_files(source), target, format)

    def process(source: Path, target: Path, client=None) -> tuple[dict, list[Path]]:
        """One input; with ``client``, its blocks run on that Dask cluster."""
        cube = read_cube(source)
        check_creation_options(target, format, creation_options, dtype=out_dtype or cube.data.dtype, bands=cube.bands)
        if cube.bands < FEW_BANDS and method == "model":
            warn(f"{source.name} has {cube.bands} band{'s' if cube.bands != 1 else ''}: not a hyperspectral cube; "
                 "the models learnt from hyperspectral scenes (try --method bicubic to compare)")
        if out_dtype is not None and out_dtype.kind in "iu" and cube.data.dtype.kind == "f" and cube.scale_factor is None:
            # Reflectance in 0..1 would come out as 0s and 1s; radiance in large units may be fine.
            warn(f"{source.name}: float values without a scale factor are rounded to whole numbers in {out_dtype}")
        chosen = None
        if method == "model":
            try:
                chosen = choose_model(cube, scale, requested)
            except ModelError as exc:
                if exc.path is None:
                    raise ModelError(exc.message, source) from None
                raise
        summary: dict = {"input": str(source), "output": str(target), "scale": scale}
        adaptation, saved = None, []
        try:
            if chosen is not None and adapt is not False and client is None:
                adaptation, saved = _adapt(source, cube, chosen, scale, adapt, adapt_time, save_model, seed, device, overwrite, summary,
                                           denoise)
            run_model = chosen if adaptation is None else adaptation.model
            side = DEFAULT_TILE if tile is None else tile
            tiles = -(-cube.rows // side) * -(-cube.cols // side)
            with progress(f"{source.name} ×{scale}", tiles) as advance:
                if client is not None:
                    from ..cluster.superres import super_resolve_blocks

                    counts = super_resolve_blocks(
                        client, cube, source, target, scale, chosen, method=method, tile=tile, device=device,
                        dtype=out_dtype, calibrate=calibrate, format=format, creation_options=creation_options,
                        overwrite=overwrite, progress=advance, scheduler=scheduler, denoise=denoise,
                    )
                    plan, written = counts.plan, target
                    detail(f"{source.name}: {counts.blocks} blocks of {tiles} tiles, {counts.block_seconds:.1f} s of worker "
                           f"time ({counts.block_seconds / max(1, tiles):.2f} s per tile), {counts.wall_seconds:.1f} s in all")
                else:
                    result, plan = super_resolve_cube(
                        cube, scale, run_model, method="bicubic" if run_model is None else "model", tile=tile, device=device,
                        dtype=out_dtype, calibrate=calibrate, gain=None if adaptation is None else adaptation.gain,
                        progress=advance, denoise=denoise,
                    )
                    counts = result.data
                _report(source, scale, chosen, run_model, plan, adaptation, summary)
                if client is None:
                    written = write_cube(result, target, format=format, overwrite=overwrite, creation_options=creation_options)
        except HsiuuError as exc:
            if exc.path is None:
                raise type(exc)(exc.message, source) from None
            raise
        if getattr(counts, "converted", 0) and counts.clipped / counts.converted >= 0.001:
            warn(f"{source.name}: {counts.clipped / counts.converted:.1%} of the values fell outside {counts.dtype}'s "
                 "range and were clipped; choose a wider --dtype")
        summary["saved_model"] = [str(p) for p in saved]
        return summary, [written, *saved]

    def report(_source: Path, result: tuple[dict, list[Path]]) -> list[Path]:
        # here, not in process: on a cluster, process runs on a worker
        summary, written = result
        summaries.append(summary)
        return [] if json_output else written

    if jobs > 1 and len(paths) > 1 and method == "model" and adapt is not False:
        import torch

        # Each job's fine-tuning would otherwise use every core; PyTorch's thread count is one
        # setting for the whole process, so it is set once, here, before the jobs start.
        torch.set_num_threads(1)
    pairs = list(zip(paths, targets))
    try:
        if scheduler is not None and len(pairs) == 1 and splits_into_blocks(paths[0]):
            # one scene: its blocks are the tasks (each worker reads its rows from the memory-mapped input)
            if adapt:
                raise click_errors.UsageError("--adapt and --save-model run on this machine: one scene on a cluster "
                                              "is cut into blocks of the shipped model (use --no-adapt, or no --scheduler)")
            from ..cluster import connect
            from .cluster import workers_text

            with connect(scheduler) as client:
                info(f"{paths[0].name}: blocks on the Dask cluster at {scheduler} ({workers_text(client)}), not adapted")
                run_batch(pairs, lambda source, target: process(source, target, client), out_dir=out_dir, check=check, report=report)
        else:
            run_batch(pairs, process, workers=jobs, out_dir=out_dir, check=check, scheduler=scheduler, report=report)
    finally:
        if json_output and summaries:
            order = {str(path): index for index, path in enumerate(paths)}  # the inputs' order, however jobs finished
            summaries.sort(key=lambda summary: order.get(summary["input"], len(order)))
            emit_json(summaries[0] if len(paths) == 1 else summaries)


def _adapt(source, cube, model, scale, adapt, adapt_time, save_model, seed, device, overwrite, summary, denoise):
    """Fine-tune ``model`` on the scene (when it is large enough, or refuse when --adapt asked for it)."""
    from ..errors import InvalidDataError, ModelError
    from ..io.atomic import check_outputs
    from ..superres.adapt import AdaptSettings, adapt_to_scene, default_time_limit, too_small
    from ..superres.export import model_paths

    reason = too_small(cube.rows, cube.cols, scale)
    if reason:
        if adapt:
            raise InvalidDataError(f"{reason}; use --no-adapt", source)
        info(f"{source.name}: not adapted: {reason}")
        summary["adaptation"] = {"ran": False, "reason": reason}
        return None, []
    try:
        model.weights()
    except ModelError as exc:
        if adapt:
            raise ModelError(f"cannot adapt {model.name}: {exc.message}", exc.path) from None
        info(f"{source.name}: not adapted: {model.name} has no weights to fine-tune ({exc.message})")
        summary["adaptation"] = {"ran": False, "reason": exc.message}
        return None, []
    stem = None
    if save_model is not None:
        stem = save_model / f"{input_stem(source)}_{model.name}_adapted"
        save_model.mkdir(parents=True, exist_ok=True)  # as --out-dir: made when missing
        check_outputs(list(model_paths(stem).values()), overwrite)
    settings = AdaptSettings(time_limit_s=adapt_time, seed=seed)
    limit = adapt_time if adapt_time is not None else default_time_limit(cube.rows * cube.cols)
    with progress(f"{source.name}: adapting {model.name} (at most {limit:.0f} s)", settings.steps) as advance:
        adaptation = adapt_to_scene(
            cube, scale, model, settings, scene=source.name, device=device, progress=advance, force=bool(adapt),
            denoise=denoise,
        )
    details = adaptation.summary()
    summary["adaptation"] = {"ran": True, **details}
    checks = details["held_back"]
    first = checks["model"]
    seen = (f"held-back pairs: bicubic {first['psnr_bicubic']:.2f} dB / {first['sam_bicubic']:.3f}°, {model.name} "
            f"{first['psnr']:.2f} dB / {first['sam']:.3f}°")
    if adaptation.fine_tuned:
        seen += f", adapted {checks['adapted']['psnr']:.2f} dB / {checks['adapted']['sam']:.3f}°"
        what = (f"adapted {model.name} in {details['seconds']:.1f} s ({details['steps']} steps, {details['stopped_by']}; "
                f"PSF σ {details['psf']['sigma_hr_pixels']:.2f} px)")
    else:
        what = f"not adapted: {details['skipped']}"
    info(f"{source.name}: {what}; {seen} → {_result_text(adaptation.result, model)}")
    saved = []
    if stem is not None:
        # What reproduces these weights (the output options do not change them).
        words = ["hsiuu", "superres", str(source), "--scale", str(scale), "--model", str(model.path if model.name not in _shipped() else model.name),
                 "--adapt", "--seed", str(seed), "--save-model", str(save_model)]
        if adapt_time is not None:
            words += ["--adapt-time", f"{adapt_time:g}"]
        saved = _save_adapted(stem, adaptation, source, overwrite, words)
    return adaptation, saved


def _shipped() -> set[str]:
    from ..superres.registry import SHIPPED

    return set(SHIPPED)


def _result_text(result: str, model) -> str:
    return "adapted result" if result == "adapted" else f"unadapted {model.name} (as with --no-adapt)"


def _save_adapted(stem: Path, adaptation, source: Path, overwrite: bool, words: list[str]) -> list[Path]:
    import shlex

    from ..superres.export import export_model

    card = {"adaptation": {"scene": str(source), "command": shlex.join(words), **adaptation.summary()}}
    written = export_model(adaptation.adapted.network, adaptation.adapted_model.info, stem, card, overwrite=overwrite)
    return [written["onnx"], written["safetensors"], written["json"], written["md"]]


def _report(source, scale, chosen, run_model, plan, adaptation, summary) -> None:
    """One line for people, and the same facts for --json."""
    if run_model is None or plan.gain == 0:
        result = "bicubic"
    else:
        result = "adapted" if adaptation is not None and adaptation.result == "adapted" else "model"
    if adaptation is not None and adaptation.result == "adapted":
        plan.gain_source = "from the held-back pairs"
    summary.update(
        result=result, model=None if chosen is None else chosen.name, backend=plan.backend, tile=plan.tile,
        gain=round(plan.gain, 4) if run_model is not None else 0.0, gain_source=plan.gain_source if run_model is not None else None,
    )
    if plan.check is not None:
        summary["self_check"] = plan.check.as_dict()
    if run_model is not None:
        summary["dimmed_lines"] = plan.dimmed_lines
    if plan.noise is not None:
        summary["noise"] = plan.noise.summary()
    denoised = (f"; denoised first (median band SNR {plan.noise.snr_db:.1f} dB, {plan.noise.dimensions} signal directions kept)"
                if plan.noise is not None and plan.noise.applied else "")
    if chosen is None:
        info(f"{source.name}: ×{scale} with bicubic")
        return
    if result == "bicubic":
        info(f"{source.name}: ×{scale} with bicubic: {chosen.name}'s detail did not help on this scene's self-check "
             f"(PSNR or SAM no better than bicubic's){denoised}")
        return
    what = f"{run_model.describe()} on {plan.backend}"
    edges = (f"; the outermost {plan.dimmed_lines} LR line(s) keep bicubic: the scene's edges are dimmed, as by a blur "
             "with zero padding" if plan.dimmed_lines else "")
    info(f"{source.name}: ×{scale} with {what}, tiles of {plan.tile} + {plan.halo} LR px, detail gain {plan.gain:.2f} "
         f"({plan.gain_source}){edges}{denoised}")
