"""What every `tractable` sub-command shares: help layout, flag meanings, data options.

One meaning per flag name across commands (see docs/cli.md):

- `--out`: where the command's output goes (run folder, PNG, CSV or report folder);
- `--limit N`: a fixed random subset of N images (the same N for the same `--seed`), the
  way training's `--limit-train` / `--limit-test` pick theirs;
- `--root`, `--download`, `--batches`, `--size`, `--channels`: where a dataset comes from
  and the shape it is brought to, on every command that reads data.

Help shows every flag's default through one formatter (`HelpFormatter`), applied to every
parser through `TractableParser`, and ends with examples (`examples`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import typing
from typing import TYPE_CHECKING, Any

from tractable.errors import ConfigError

if TYPE_CHECKING:
    from tractable.models.base import TractableModel
    from tractable.run_folder import Folder
    from tractable.sampling import Progress


class HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to every flag's help unless the help already says it.

    Switches show on/off; a flag left unset (None) says so, since "None" tells nobody
    anything; descriptions are wrapped, example epilogs keep their lines.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _format_action(self, action: argparse.Action) -> str:
        if action.option_strings and action.help is None:  # a flag without help text
            action = copy.copy(action)
            action.help = "(required)" if action.required else \
                f"(default: {default_text(action)})"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default is argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
                or "default" in text.lower()):
            return text
        if action.required:
            return f"{text} (required)".strip()
        return f"{text} (default: {default_text(action)})".strip()


def default_text(action: argparse.Action) -> str:
    """How a flag's default reads in help: on/off for switches, `unset` for None."""
    d = getattr(action, "shown_default", action.default)
    if isinstance(action, argparse.BooleanOptionalAction):
        return "unset" if d is None else ("on" if d else "off")
    if action.nargs == 0:  # a switch: store_true / store_false / store_const
        if isinstance(action, argparse._StoreFalseAction):
            return "off" if d in (None, True) else "on"
        return "off" if d in (None, False) else "on"
    if d is None:
        return "unset"
    if isinstance(d, (list, tuple)):
        return " ".join(str(v) for v in d) if d else "none"
    return str(d).replace("%", "%%")


class TractableParser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; its sub-parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def show_defaults(parser: argparse.ArgumentParser, defaults: object) -> None:
    """Show the field defaults of a config dataclass instance on flags that default to None
    (None there means "not given", so a resumed run can tell what was asked for)."""
    for action in parser._actions:
        value = getattr(defaults, action.dest, None)
        if action.default is None and value is not None and value != {}:
            action.shown_default = value  # type: ignore[attr-defined]


def examples(*lines: str) -> str:
    """An epilog of example command lines, printed at the end of a command's help."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class DeprecatedFlag(argparse.Action):
    """An old flag name kept working: stores into the new flag's dest and says so once."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "",
                 **kwargs: Any) -> None:
        self.new = new
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"tractable: warning: {option_string} is deprecated; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


# ---- flags generated from a config dataclass ------------------------------------------------
def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, *,
                        groups: dict[str, Any] | None = None, skip: typing.Collection[str] = (),
                        extra: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One flag per field of the config dataclass `cls`, from its `tractable.config.setting`
    metadata (help, choices, aliases, flag name, metavar, group); returns the fields given
    a flag.

    `--field-name` stores into `dest=field_name`; `int`, `float` and `str` fields (also
    `X | None`) take one value, `tuple[X, X]` fields one value per item; a bool field that
    defaults to False is a switch, one that defaults to True a `--no-...` switch, an
    optional bool `--x` / `--no-x`. Every flag defaults to None, meaning "not given", so a
    resumed run can tell what was asked for (`show_defaults` shows the real defaults).
    `groups` maps a field's group to its argument group (one is made for a group not
    named), `skip` names fields whose flags are written by hand, and `extra` adds argparse
    options to a field's flag (values known only at run time, such as a registry's names).
    """
    hints = typing.get_type_hints(cls)
    groups = dict(groups or {})
    made = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        group = f.metadata.get("group", "")
        if group and group not in groups:
            groups[group] = parser.add_argument_group(group)
        target = groups[group] if group else parser
        kwargs = {**_flag_options(cls, f, hints[f.name]), **(extra or {}).get(f.name, {})}
        target.add_argument(*_flag_names(f), **kwargs)
        made.append(f.name)
    return made


def _flag_names(f: dataclasses.Field[Any]) -> list[str]:
    name = f.name.replace("_", "-")
    first = f.metadata.get("flag") or (f"--no-{name}" if f.default is True else f"--{name}")
    return [first, *f.metadata.get("aliases", ())]


def _flag_options(cls: type, f: dataclasses.Field[Any], hint: Any) -> dict[str, Any]:
    """argparse options of a field's flag (see `add_dataclass_flags`)."""
    meta = f.metadata
    options: dict[str, Any] = {"dest": f.name, "default": None, "help": meta.get("help")}
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    if hint is bool:
        options["action"] = (argparse.BooleanOptionalAction if f.default is None
                             else "store_false" if f.default is True else "store_true")
        return options
    if typing.get_origin(hint) is tuple and len(set(typing.get_args(hint))) == 1:
        options["nargs"] = len(typing.get_args(hint))
        hint = typing.get_args(hint)[0]
    if hint not in (int, float, str):
        raise TypeError(f"{cls.__name__}.{f.name}: no flag for a {hint} field; write its "
                        "flag by hand and skip it here")
    if hint is not str:
        options["type"] = hint
    if "choices" in meta:
        options["choices"] = list(meta["choices"])
    if meta.get("metavar"):
        names = tuple(meta["metavar"].split())
        options["metavar"] = names if "nargs" in options else names[0]
    return options


# ---- data flags ----------------------------------------------------------------------------
DATA_SOURCE_FLAGS = ("--root", "--download", "--batches", "--size", "--channels")


def data_source_args(g: Any, prefix: str = "", what: str = "the dataset",
                     shape: bool = True) -> None:
    """Where a dataset comes from and its shape (as in `tractable data`); see `data_options`.

    `prefix` names one of several data sets' flags (`ood`: `--ood-root`, ...); `shape`:
    also `--size` and `--channels`.
    """
    dest = prefix.replace("-", "_")
    g.add_argument(f"--{prefix}root", dest=f"{dest}root", metavar="DIR",
                   help=f"folder with the official files of {what} (default: the cache "
                   "folder, $TRACTABLE_DATA/NAME)")
    g.add_argument(f"--{prefix}download", dest=f"{dest}download", action="store_true",
                   default=None, help="download missing official files first")
    g.add_argument(f"--{prefix}batches", dest=f"{dest}batches", type=int, nargs="+",
                   metavar="K", help="cifar10 / imagenet32 / imagenet64: use only these "
                   "training batches (default: all)")
    if not shape:
        return
    g.add_argument(f"--{prefix}size", dest=f"{dest}size", type=int, metavar="PIXELS",
                   help="resize (shorter side) and center-crop to PIXELS x PIXELS (default: "
                   "the images' own size)")
    g.add_argument(f"--{prefix}channels", dest=f"{dest}channels", type=int, choices=[1, 3],
                   help="1: greyscale, 3: RGB (default: the images' own channels)")
    g.add_argument(f"--{prefix}holdout", dest=f"{dest}holdout", type=float, metavar="FRACTION",
                   help="image folders without train/ and test/: the fraction held out as "
                   "the test split; 1: every image is the test split (default 0.1)")


def data_options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The `load_dataset` options given on the command line (those left unset omitted)."""
    opts = {k: getattr(args, prefix + k, None)
            for k in ("root", "download", "batches", "size", "channels", "holdout")}
    return {k: v for k, v in opts.items() if v is not None}


def limit_arg(p: Any, what: str = "the split") -> None:
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"a fixed random subset of N images of {what}, the same for the same "
                   "--seed (default: every image)")


def weights_and_device_args(p: Any) -> None:
    """`--weights ema|raw` and `--device`: which saved weights `open_model` loads, where."""
    p.add_argument("--weights", default="ema", choices=["ema", "raw"],
                   help="Polyak-averaged (ema) or the optimizer's raw weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def open_model(args: argparse.Namespace,
               path: str | None = None) -> tuple[TractableModel, Folder]:
    """The model of `path` (default `args.path`: a run or model folder, `pretrained:NAME` or
    `hf:...`) with `--weights` on `--device` (and `--dtype` where the command has one), in
    eval mode, and its opened folder: the reference is resolved once (`tractable.load`)."""
    from tractable.models import load
    from tractable.run_folder import open_folder

    folder = open_folder(path or args.path, weights=args.weights)
    model = load(folder, weights=args.weights, device=args.device,
                 dtype=getattr(args, "dtype", None))
    return model, folder


class ProgressBar:
    """A `model.sample` callback drawing a progress bar on stderr, if it is a terminal."""

    def __init__(self, desc: str = "sampling") -> None:
        self.desc = desc
        self.bar: Any = None

    def __call__(self, progress: Progress) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=progress.total, desc=self.desc, unit=progress.unit)
        self.bar.update(progress.step - self.bar.n)
        if progress.step >= progress.total:
            self.bar.close()


def dataset_for(args: argparse.Namespace, folder: Folder) -> tuple[str, dict[str, Any]]:
    """(name, load options): `--data` and the data flags, else the run's own dataset with
    the options it trained with (the data flags given still win)."""
    given = data_options(args)
    if getattr(args, "data", None):
        if args.data == folder.data:
            return str(args.data), {**folder.data_options, **given}
        return str(args.data), given
    if not folder.data:
        raise ConfigError(f"{args.path} does not record its dataset: pass --data NAME")
    return folder.data, {**folder.data_options, **given}
