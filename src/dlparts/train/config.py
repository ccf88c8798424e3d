"""Recipe configs: YAML sets the defaults, ``key=value`` on the command line overrides any key.

The recipes ship with the package (``dlparts/configs/*.yaml``, one file per recipe; the repository's ``configs/`` is a
link to them): ``load_config`` takes a recipe by bare name (``pointnet2_cls_ssg_cpu``) as well as any YAML path.

The schema is :data:`DEFAULTS`; every key a config or an override names must be in it (the mappings named in
:data:`OPEN_KEYS` take any sub-key and pass them through to a builder).  Values are checked against the default's type
(an int is accepted where a float is expected) and against :data:`CHOICES`, so a typo is one clear
:class:`~dlparts.errors.ConfigError` before any training starts.  The resolved config is saved in the run folder
(``config.yaml``), as timm's ``train.py`` does with its ``args.yaml``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from dlparts.errors import ConfigError, DataNotFoundError

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "task": None,  # image_cls | point_cls | point_partseg | point_semseg; default: the model's registered task
    "run": {"dir": "runs", "name": None},
    "model": {"name": None, "args": {}, "variant": None},
    "data": {"name": None, "root": None, "num_points": 1024, "batch_size": 32, "eval_batch_size": None,
             "workers": 0, "val_fraction": 0.1, "augment": True, "transforms": None, "args": {},
             "classes": None, "test_fraction": 0.2, "label_field": None, "columns": None, "drop_nonfinite": False},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "betas": [0.9, 0.999]},
    "sched": {"name": "step", "step_size": 20, "gamma": 0.7, "min_lr": 1e-5, "warmup_epochs": 0, "patience": 3,
              "factor": 0.1},
    "loss": {"label_smoothing": 0.0},
    "bn_momentum": {"enabled": False, "start": 0.5, "decay": 0.5, "step": 20, "min": 0.01},
    "trainer": {"max_epochs": 10, "accelerator": "auto", "devices": "auto", "num_nodes": 1, "strategy": "auto",
                "precision": "auto", "gradient_clip_val": 0.0, "sync_batchnorm": False, "log_every_n_steps": 10,
                "limit_train_batches": 1.0, "limit_val_batches": 1.0, "limit_test_batches": 1.0,
                "check_val_every_n_epoch": 1, "progress": True, "threads": 0, "max_time": None,
                "checkpoint_every_n_steps": 0},
    "eval": {"votes": 1, "vote_axis": 1, "vote_scale": [0.8, 1.25]},
    "plots": {"enabled": True, "examples": 4},
}

#: Mappings whose sub-keys are free: they go as keyword arguments to the model builder or the dataset.
OPEN_KEYS = ("model.args", "data.args")

#: Types of keys whose default does not tell (None, or a string that may also be a number).
TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,), "model.variant": (dict,), "run.name": (str,), "model.name": (str,), "data.name": (str,), "data.root": (str,),
    "data.eval_batch_size": (int,), "data.transforms": (str, list), "trainer.devices": (int, str, list), "trainer.precision": (str, int),
    "trainer.limit_train_batches": (int, float), "trainer.limit_val_batches": (int, float),
    "trainer.limit_test_batches": (int, float), "trainer.max_time": (int, float),
    "data.classes": (list,), "data.label_field": (str,), "data.columns": (dict,),
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "task": ("image_cls", "point_cls", "point_partseg", "point_semseg"),
    "optim.name": ("sgd", "adam", "adamw"),
    "sched.name": ("none", "step", "cosine", "plateau"),
    "trainer.precision": ("auto", "32", 32, "16-mixed", "bf16-mixed", "64", 64, "64-true"),
    "eval.vote_axis": (0, 1, 2),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
}

#: Closed/open ranges ``(low, high, low_inclusive, high_inclusive)`` of numeric keys; ``None`` is unbounded.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "optim.weight_decay": (0, None, True, False), "optim.momentum": (0, 1, True, False),
    "loss.label_smoothing": (0, 1, True, False), "data.val_fraction": (0, 1, True, False),
    "data.test_fraction": (0, 1, False, False),
    "data.workers": (0, None, True, False), "sched.gamma": (0, None, False, False),
    "sched.min_lr": (0, None, True, False), "sched.warmup_epochs": (0, None, True, False),
    "sched.patience": (0, None, True, False), "sched.factor": (0, 1, False, False),
    "bn_momentum.start": (0, 1, True, True), "bn_momentum.decay": (0, 1, False, True),
    "bn_momentum.step": (1, None, True, False), "bn_momentum.min": (0, 1, True, True),
    "trainer.gradient_clip_val": (0, None, True, False), "trainer.log_every_n_steps": (1, None, True, False),
    "trainer.check_val_every_n_epoch": (1, None, True, False), "trainer.threads": (0, None, True, False),
    "trainer.checkpoint_every_n_steps": (0, None, True, False),
    "plots.examples": (0, None, True, False), "seed": (0, 2 ** 32 - 1, True, True),
    **{f"trainer.limit_{split}_batches": (0, None, True, False) for split in ("train", "val", "test")},
}

#: List-valued keys: how many numbers each holds, and their range.
LISTS: dict[str, tuple[int, tuple[float | None, float | None, bool, bool]]] = {
    "optim.betas": (2, (0, 1, True, False)), "eval.vote_scale": (2, (0, None, False, False)),
}

#: Keys that must hold a positive number.
POSITIVE = ("data.num_points", "data.batch_size", "data.eval_batch_size", "optim.lr", "trainer.max_epochs",
            "trainer.max_time", "sched.step_size", "eval.votes", "trainer.num_nodes")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; open mappings stay whole."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in OPEN_KEYS:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


_SCHEMA = _flatten(DEFAULTS)


def _set(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree[key]
    tree[leaf] = value


def get(cfg: dict, path: str) -> Any:
    """``get(cfg, "optim.lr")``."""
    for key in path.split("."):
        cfg = cfg[key]
    return cfg


def _coerce(path: str, value: Any, where: str) -> Any:
    """Check ``value`` for the key ``path``; return it, converted where YAML reads a number as text (``1e-3``)."""
    if path in OPEN_KEYS:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {path} must be a mapping of builder arguments, got {value!r}")
        return value
    default = _SCHEMA[path]
    types = TYPES.get(path) or ((int, float) if isinstance(default, float) else (type(default),))
    if isinstance(value, str) and float in types:
        try:
            value = float(value)
        except ValueError:
            pass
    ok = value is None and (default is None or path in TYPES)
    ok = ok or (isinstance(value, types) and not (isinstance(value, bool) and bool not in types))
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{where}: {path}={value!r} must be {names}")
    if path in CHOICES and value is not None and value not in CHOICES[path]:
        raise ConfigError(f"{where}: {path}={value!r} must be one of {', '.join(map(str, CHOICES[path]))}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {path}={value!r} must be a finite number")
    if path in POSITIVE and value is not None and value <= 0:
        raise ConfigError(f"{where}: {path}={value!r} must be positive")
    if path in RANGES and value is not None:
        _check_range(path, value, RANGES[path], where)
    if path in LISTS:
        _check_list(path, value, where)
    if path == "trainer.devices":
        _check_devices(value, where)
    if path.startswith("trainer.limit_") and isinstance(value, float) and value > 1:
        raise ConfigError(f"{where}: {path}={value!r}: a fraction must be at most 1.0 (an int counts batches)")
    return value


def _check_range(path: str, value: Any, bounds: tuple, where: str) -> None:
    low, high, low_in, high_in = bounds
    below = low is not None and (value < low if low_in else value <= low)
    above = high is not None and (value > high if high_in else value >= high)
    if below or above:
        left = "unbounded" if low is None else f"{'[' if low_in else '('}{low}"
        right = "" if high is None else f"{high}{']' if high_in else ')'}"
        span = f"{left}, {right or 'inf)'}"
        raise ConfigError(f"{where}: {path}={value!r} must be in {span}")


def _check_list(path: str, value: Any, where: str) -> None:
    size, bounds = LISTS[path]
    numbers = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not numbers or len(value) != size:
        raise ConfigError(f"{where}: {path}={value!r} must be a list of {size} numbers")
    for v in value:
        if not math.isfinite(v):
            raise ConfigError(f"{where}: {path}={value!r} must hold finite numbers")
        _check_range(path, v, bounds, where)


def _check_devices(value: Any, where: str) -> None:
    """Lightning's ``devices``: ``"auto"``, a count (``-1`` = all), a list of indices or their text ``"0,1"``."""
    ok = value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= -1 and value != 0)
    if isinstance(value, str) and value != "auto":
        ok = all(part.strip().lstrip("-").isdigit() for part in value.split(",") if part.strip()) and \
            value.strip(", ") != ""
    if isinstance(value, list):
        ok = bool(value) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok:
        raise ConfigError(f"{where}: trainer.devices={value!r} must be auto, a count (-1 for all), a list of device "
                          f"indices or their text such as '0,1'")


def _merge(cfg: dict, tree: dict, where: str, prefix: str = "") -> None:
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {tree!r}")
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if path in _SCHEMA:
            _set(cfg, path, _coerce(path, value, where))
        elif any(k.startswith(path + ".") for k in _SCHEMA) and isinstance(value, dict):
            _merge(cfg, value, where, path + ".")
        else:
            raise ConfigError(f"{where}: unknown key {path!r}{_hint(path)}")


def _hint(path: str) -> str:
    import difflib

    close = difflib.get_close_matches(path, list(_SCHEMA), n=2)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.01"`` -> ``("optim.lr", 0.01)``; the value is read as YAML (numbers, true/false, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not key=value, e.g. trainer.max_epochs=2")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


#: The folder of the recipes shipped with dlparts (package data).
RECIPES = Path(__file__).resolve().parent.parent / "configs"


def list_recipes() -> list[str]:
    """The names of the shipped recipes, sorted (``alexnet_imagenet``, ..., ``pointnet_semseg_s3dis``)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def recipe_path(name: str | Path) -> Path:
    """The config file ``name`` names: a YAML file at that path, else the shipped recipe of that bare name (with or
    without ``.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.parent != Path(".") or path.suffix not in ("", ".yaml"):
        raise DataNotFoundError(f"config file {path} does not exist")
    shipped = RECIPES / f"{path.stem}.yaml"
    if not shipped.is_file():
        raise DataNotFoundError(f"config file {path} does not exist and is not a recipe name (one of "
                                f"{', '.join(list_recipes())})")
    return shipped


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None,
                tree: dict | None = None) -> dict:
    """The resolved config: :data:`DEFAULTS` (or ``base``), then the YAML file or recipe name ``path`` (see
    :func:`recipe_path`) or the mapping ``tree``, then ``overrides``."""
    cfg = copy.deepcopy(base if base is not None else DEFAULTS)
    if tree is not None:
        _merge(cfg, tree, "config")
    if path is not None:
        path = recipe_path(path)
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                              f"{exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        _merge(cfg, tree, str(path))
    for text in overrides:
        key, value = parse_override(text)
        if key not in _SCHEMA:
            open_parent = next((k for k in OPEN_KEYS if key.startswith(k + ".")), None)
            if open_parent is None:
                raise ConfigError(f"override {text!r}: unknown key {key!r}{_hint(key)}")
            get(cfg, open_parent)[key[len(open_parent) + 1:]] = value
            continue
        _set(cfg, key, _coerce(key, value, f"override {text!r}"))
    if cfg["model"]["name"] is None:
        raise ConfigError("model.name is not set; give it in the config or as model.name=NAME")
    if cfg["data"]["name"] is None:
        raise ConfigError("data.name is not set; give it in the config or as data.name=NAME")
    _check_model_arguments(cfg)
    return cfg


def _check_model_arguments(cfg: dict) -> None:
    """Every ``model.args`` key, and ``model.variant``, must be an argument of the model's builder: refused here,
    naming the key, before any data is prepared."""
    from dlparts.models.registry import builder_arguments

    name = cfg["model"]["name"]
    accepted = builder_arguments(name)
    if accepted is None:
        return
    for key in cfg["model"]["args"]:
        if key not in accepted:
            raise ConfigError(f"model.args.{key}: model {name!r} takes no argument {key!r} (it takes "
                              f"{', '.join(accepted)})")
    if cfg["model"]["variant"] is not None and "variant" not in accepted:
        raise ConfigError(f"model.variant: model {name!r} has no variants (its builder takes no 'variant')")


def output_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder to write into (it may not exist yet); refused, naming ``what`` (the option or key), when
    it or the nearest existing path above it is a file."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{what} {path}: {existing} is a file, not a folder")
    return path


def save_config(cfg: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
