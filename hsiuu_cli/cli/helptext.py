"""Help pages for people who do not write Python, in the plain style of ``rio`` and ``gdal``.

Every command's ``--help`` is rendered here, so the conventions hold for options added anywhere:

* a value is named by what it is, never by its Python type: ``N`` (a whole number), ``X`` (a number),
  ``FILE``, ``DIR`` (an option whose name says dir), ``a|b|c`` (a fixed choice), and otherwise the
  option's own name in capitals (``--method METHOD``); an argument by its name in capitals
  (``LR_HSI``); an explicit ``metavar=`` wins (``NAME|FILE``, ``KEY=VALUE``). Flags take no value.
* limits and defaults read as words: ``[default: 1; at least 1]``, ``[repeatable]``, ``[required]``.
* the option names stand in a column of their own, never cut: a long one puts its text on the next line.
* a docstring's ``Examples:`` block is printed as written, after the options.

Text is wrapped to the terminal, at most 78 columns (Click's limit), so a page reads at 80 columns.
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Sequence, get_args

EXAMPLES_MARKER = "Examples:"


def _described_type(param) -> tuple[object, tuple | None, bool]:
    """(element type, choices or None, is a path) of a parameter, on Typer's own Click or on Click."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:  # typer >= 0.29
        annotation = descriptor.annotation
        if descriptor.is_list or descriptor.is_tuple:
            args = get_args(annotation)
            annotation = args[0] if args else str
        choices = descriptor.choices if descriptor.is_choice else None
        return annotation, choices, bool(descriptor.is_path)
    kind = getattr(param, "type", None)  # click.ParamType
    name = getattr(kind, "name", "")
    choices = tuple(getattr(kind, "choices", ()) or ()) or None
    by_name = {"integer": int, "integer range": int, "float": float, "float range": float, "boolean": bool}
    return by_name.get(name, str), choices, name in ("path", "file")


def _choice_text(choice: object) -> str:
    return str(choice.value) if isinstance(choice, Enum) else str(choice)


def value_name(param) -> str:
    """What the help calls the value of an option or argument (see the module's conventions)."""
    if param.metavar:
        return param.metavar
    if getattr(param, "param_type_name", "") == "argument":
        return (param.name or "value").upper()
    longs = [o[2:] for o in param.opts if o.startswith("--")]
    name = (longs[0] if longs else param.name or "value").lower()
    annotation, choices, is_path = _described_type(param)
    if choices:
        return "|".join(_choice_text(c) for c in choices)
    if annotation is int:
        return "N"
    if annotation is float:
        return "X"
    if is_path or annotation is Path:
        return "DIR" if name.endswith(("dir", "directory")) else "FILE"
    return name.upper()


def is_flag(param) -> bool:
    return bool(getattr(param, "is_flag", False)) or bool(getattr(param, "count", False))


def usage_name(param) -> str:
    """An argument as the usage line shows it: ``CUBE...``, ``[RESULT]``."""
    name = value_name(param)
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


def option_label(param) -> str:
    """``-s, --scale N``; a pair of flags as ``--calibrate / --no-calibrate``."""
    shorts = [o for o in param.opts if not o.startswith("--")]
    longs = [o for o in param.opts if o.startswith("--")]
    names = ", ".join(shorts + longs)
    if not shorts:
        names = "    " + names  # long names line up under short ones
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not is_flag(param):
        names += " " + value_name(param)
    return names


def _default_text(param) -> str | None:
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return show
    if show is False:
        return None
    default = param.default
    if default is None or callable(default):
        return None
    if is_flag(param):
        if param.secondary_opts:  # --x/--no-x: name the one in force
            return (param.opts if default else param.secondary_opts)[-1]
        return None
    if isinstance(default, (list, tuple)):
        return ", ".join(_choice_text(d) for d in default) or None
    return _choice_text(default)


def _range_text(param) -> str | None:
    low = getattr(param, "min", None)
    high = getattr(param, "max", None)
    if low is None and high is None:  # Click keeps the limits on its range type
        low = getattr(getattr(param, "type", None), "min", None)
        high = getattr(getattr(param, "type", None), "max", None)
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"at least {low:g}"
    if high is not None:
        return f"at most {high:g}"
    return None


def notes(param) -> str:
    """``[default: 1; at least 1; repeatable; required]`` after a parameter's text."""
    parts = []
    default = None if getattr(param, "param_type_name", "") == "argument" else _default_text(param)
    if default:
        parts.append(f"default: {default}")
    limits = _range_text(param)
    if limits:
        parts.append(limits)
    if getattr(param, "multiple", False):
        parts.append("repeatable")
    if param.required:
        parts.append("required")
    return f"[{'; '.join(parts)}]" if parts else ""


def _row(label: str, param) -> tuple[str, str]:
    text = inspect.cleandoc(getattr(param, "help", None) or "")
    extra = notes(param)
    return label, f"{text}  {extra}".strip() if extra else text


def split_examples(text: str) -> tuple[str, str]:
    """A docstring's description and its ``Examples:`` block (kept as written)."""
    description, marker, examples = inspect.cleandoc(text or "").partition(EXAMPLES_MARKER)
    return description.strip(), inspect.cleandoc(examples) if marker else ""


def usage_pieces(command, ctx) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    pieces += [usage_name(p) for p in command.get_params(ctx) if getattr(p, "param_type_name", "") == "argument"]
    subcommands = getattr(command, "subcommand_metavar", None)
    if subcommands and hasattr(command, "list_commands"):
        pieces.append(subcommands)
    return pieces


def format_help(command, ctx, formatter, *, common_options: Sequence = ()) -> None:
    """Write ``command``'s help page: usage, description, arguments, options, common options,
    subcommands and examples, in that order."""
    formatter.write_usage(ctx.command_path, " ".join(usage_pieces(command, ctx)))
    description, examples = split_examples(command.help or "")
    if description:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(description)

    visible = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    arguments = [p for p in visible if getattr(p, "param_type_name", "") == "argument"]
    common_names = {p.name for p in common_options}
    help_names = set(ctx.help_option_names)
    options, common = [], []
    for param in visible:
        if getattr(param, "param_type_name", "") != "option":
            continue
        is_common = param.name in common_names or (bool(common_names) and bool(help_names & set(param.opts)))
        (common if is_common else options).append(param)
    if arguments:
        with formatter.section("Arguments"):
            formatter.write_dl([_row(usage_name(p).strip("[]"), p) for p in arguments])
    if options:
        with formatter.section("Options"):
            formatter.write_dl([_row(option_label(p), p) for p in options])
    if common:
        with formatter.section("Common options"):
            formatter.write_dl([_row(option_label(p), p) for p in common])
    if hasattr(command, "list_commands"):
        rows = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                rows.append((name, summary(sub)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
    if examples:
        with formatter.section("Examples"):
            for line in examples.splitlines():
                formatter.write(f"{'':>{formatter.current_indent}}{line}".rstrip() + "\n")
    if hasattr(command, "list_commands"):
        formatter.write_paragraph()
        formatter.write_text(f"Run '{ctx.command_path} COMMAND --help' for a command's options and examples.")


def summary(command) -> str:
    """The first paragraph of a command's help, on one line (the list of commands)."""
    if command.short_help:
        return inspect.cleandoc(command.short_help)
    description, _ = split_examples(command.help or "")
    return " ".join(description.split("\n\n")[0].split())
