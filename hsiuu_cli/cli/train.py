"""`hsiuu train`: train models on your own cubes."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Command, Group, detail, emit, info, output_folder
from .options import Device, Overwrite, Seed

train_app = typer.Typer(cls=Group, help="Train models on your own cubes.", no_args_is_help=True, rich_markup_mode=None)


NETWORK_NAMES = {"unmixingsr": "UnmixingSR", "bandwise": "band-wise"}


def _training_plan(event: dict, scale: int, self_supervised: bool) -> str:
    """'training on 10 cubes, validating on 2 (×4, UnmixingSR)', as training split them."""
    train, validation = event["train"], event["validation"]
    network = f"×{scale}, {NETWORK_NAMES.get(event['network'], event['network'])}"
    plural = lambda count: f"{count} cube{'s' if count != 1 else ''}"  # noqa: E731
    if self_supervised:
        return f"training on {plural(len(train))}, self-supervised: the fit is measured on the same scenes ({network})"
    if len(train) == 1 and len(validation) == 1 and train[0].endswith(" (top)"):
        return f"training on the top rows of {train[0][:-6]}, validating on its bottom rows ({network})"
    held = f"validating on {len(validation)}" if validation else "no validation"
    return f"training on {plural(len(train))}, {held} ({network})"


def _command_line(data: list[str], values: dict) -> str:
    """The exact command that reproduces this run, every option spelled out."""
    parts = ["hsiuu", "train", "superres", *data]
    for flag, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


@train_app.command("superres", cls=Command)
def superres_train_command(
    data: Annotated[list[str], typer.Argument(help="HR training cubes (ENVI/GeoTIFF files or folders, searched recursively).", show_default=False)],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Up-sampling factor: 2, 3, 4 or 8.")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR/NAME", help="Model name with folder, e.g. models/my_sensor_x4 (writes .onnx, .safetensors, .json, .md).")],
    self_supervised: Annotated[bool, typer.Option("--self", help="No HR data: each scene learns to restore itself degraded ×scale; all of it trains (no held-out split).")] = False,
    band_agnostic: Annotated[bool, typer.Option("--band-agnostic", help="Band-wise network that serves any band count (else UnmixingSR for this sensor family).")] = False,
    unmixing: Annotated[bool, typer.Option("--unmixing/--no-unmixing", help="Auxiliary unmixing task and material-aware module (UnmixingSR).")] = True,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs of the SR step.")] = 20,
    steps_per_epoch: Annotated[int, typer.Option("--steps-per-epoch", min=1, help="Batches per epoch.")] = 50,
    unmixing_steps: Annotated[int, typer.Option("--unmixing-steps", min=0, help="Batches of step I (LR unmixing).")] = 200,
    patch: Annotated[Optional[int], typer.Option("--patch", min=4, help="HR patch side in pixels (default 16 LR pixels: 16 × scale).")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Patches per step (each with all its bands).")] = 1,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate (cosine decay to 0).")] = 1e-3,
    width: Annotated[Optional[int], typer.Option("--width", min=1, help="Feature channels of the SR trunk (default 32).")] = None,
    depth: Annotated[Optional[int], typer.Option("--depth", min=1, help="GRAM blocks in the SR body (default 3).")] = None,
    channels: Annotated[int, typer.Option("--channels", min=1, help="Spectral channels of UnmixingSR (bands are resampled to these).")] = 64,
    endmembers: Annotated[int, typer.Option("--endmembers", min=1, help="Endmembers of the auxiliary unmixing.")] = 6,
    beta: Annotated[float, typer.Option("--beta", min=0.0, help="Weight of the LR-HR abundance-consistency loss.")] = 1e-3,
    degradation: Annotated[str, typer.Option("--degradation", metavar="bicubic|gaussian[:SIGMA][,...]", help="How LR is made from HR: bicubic (antialiased), gaussian (PSF σ = scale/2) or gaussian:SIGMA (σ in HR pixels; 0: point sampling). Comma-separated: a mix, each item one LR version of every training scene; the first makes the validation pairs.")] = "bicubic",
    val: Annotated[Optional[list[Path]], typer.Option("--val", help="Validation cube; never trained on. Default: --val-fraction of the data.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.95, help="Share of scenes held out for validation (one scene: its bottom rows).")] = 0.2,
    init: Annotated[Optional[str], typer.Option("--init", metavar="NAME|FILE", help="Start from this model's weights (shipped name or path), e.g. to refine with --self.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint an interrupted run left beside the output.")] = False,
    description: Annotated[str, typer.Option("--description", help="Text for the model card.")] = "",
    device: Device = "auto",
    seed: Seed = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for PyTorch (default: all cores).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Train a super-resolution model and export it (ONNX + safetensors + model card).

    Examples:
      A model for your sensor from high-resolution cubes:
        hsiuu train superres hr_cubes/ --scale 4 -o models/my_sensor_x4
      No high-resolution data: refine a shipped model on the scene itself:
        hsiuu train superres scene.hdr --self --init agnostic_x4 -s 4 \\
            -o models/scene_x4
      Then: hsiuu superres scene.hdr -s 4 -m models/scene_x4 -o scene_x4.hdr
    """
    from ..errors import ParameterError
    from ..superres.training import TrainingOptions, collect_cubes, parse_degradations, train_and_export
    from .common import progress

    try:
        parse_degradations(degradation)
    except ParameterError as exc:
        raise typer.BadParameter(exc.message, param_hint="--degradation") from None

    options = TrainingOptions(
        scale=scale, band_agnostic=band_agnostic, width=width, depth=depth, channels=channels,
        endmembers=endmembers, unmixing=unmixing, epochs=epochs, steps_per_epoch=steps_per_epoch,
        unmixing_steps=unmixing_steps, patch=patch, batch=batch, learning_rate=learning_rate, beta=beta,
        val_fraction=val_fraction, degradation=degradation, self_supervised=self_supervised, seed=seed,
        device=device, threads=threads, init=init,
    )
    options.check()
    output_folder(output.parent)  # made now, and taken away again if the run leaves it empty
    paths = collect_cubes(data)
    val_paths = collect_cubes(val) if val else None
    command = _command_line(
        data,
        {
            "--scale": scale, "-o": str(output), "--self": self_supervised, "--band-agnostic": band_agnostic,
            "--no-unmixing": not unmixing, "--epochs": epochs, "--steps-per-epoch": steps_per_epoch,
            "--unmixing-steps": unmixing_steps, "--patch": patch, "--batch": batch, "--lr": learning_rate,
            "--width": width, "--depth": depth, "--channels": None if band_agnostic else channels,
            "--endmembers": None if band_agnostic else endmembers, "--beta": None if band_agnostic else beta,
            "--degradation": degradation, "--val": [str(v) for v in val] if val else None,
            "--val-fraction": None if val else val_fraction, "--init": init, "--seed": seed, "--threads": threads,
            "--description": description or None,
        },
    )
    has_unmixing = not band_agnostic and unmixing and init is None
    total = epochs * steps_per_epoch + (unmixing_steps if has_unmixing else 0)
    with progress("training", total) as advance:
        def on_progress(event: dict) -> None:
            if event["phase"] in ("unmixing", "sr"):
                advance(1)
            elif event["phase"] == "epoch":
                gain = event.get("val_psnr_gain_db")
                detail(f"epoch {event['epoch']}: loss {event['train_loss']:.4f}"
                       + ("" if gain is None else f", validation {gain:+.2f} dB over bicubic"))
            elif event["phase"] == "resume":
                info(f"resuming after epoch {event['epoch']}")
            elif event["phase"] == "notice":
                info(event["message"])
            elif event["phase"] == "start":
                info(_training_plan(event, scale, self_supervised))

        written, card = train_and_export(
            paths, options, output, val_paths=val_paths, resume=resume, overwrite=overwrite, command=command,
            description=description, on_progress=on_progress,
        )
    metrics = card.get("metrics")
    if metrics:
        mean = metrics["mean"]
        held_out = card["training"].get("val_held_out", True)
        what = "validation" if held_out else "fit on the training scenes (not held out)"
        info(f"{what}: PSNR {mean['psnr']:.2f} dB (bicubic {mean['psnr_bicubic']:.2f}), "
             f"SAM {mean['sam']:.3f}° (bicubic {mean['sam_bicubic']:.3f}°)")
    for path in written.values():
        emit(str(path))
