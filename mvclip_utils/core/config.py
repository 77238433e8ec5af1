"""Loading a run config: one YAML per run, bound to the schema and checked before any work starts.

`load_config` reads the YAML (following `extends:` chains), walks it against the type hints of
`schema.RunConfig` and fails with the key's dotted path and what was expected (unknown keys get
a did-you-mean); `config_checks.check_config` then refuses values that would fail later. The
sections themselves live in `schema`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_checks import check_config, fail
from .runs import atomic_write_text
from .schema import ConfigError, ExistingFile, OVTAblation, OVTConfig, RunConfig


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is ExistingFile:
        return "a path to an existing file"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in _public_fields(tp))}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _convert(value: Any, tp: Any, path: str, base_dir: Path) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:  # Optional[X]: X's own message
            return _convert(value, non_null[0], path, base_dir)
        for alternative in non_null:  # the first alternative that fits
            try:
                return _convert(value, alternative, path, base_dir)
            except ConfigError:
                pass
        fail(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail(path, f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            fail(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]", base_dir) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, base_dir)
    if tp is ExistingFile:
        if not isinstance(value, str):
            fail(path, f"expected a file path, got {value!r}")
        resolved = (base_dir / value).resolve()
        if not resolved.is_file():
            fail(path, f"file {value!r} does not exist (looked at {resolved}); fix the path or remove the key")
        return str(resolved)
    if tp is bool:
        if not isinstance(value, bool):
            fail(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(path, f"expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, float) and not math.isfinite(value):  # .nan / .inf pass every range check
            fail(path, f"expected a finite number, got {value}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(path, f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(path, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config type {tp!r} at {path} is not supported by the validator")


def _build(cls: type, data: Any, path: str, base_dir: Path) -> Any:
    if not isinstance(data, dict):
        fail(path, f"expected {_type_name(cls)}, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _public_fields(cls)}
    for key in data:
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            fail(f"{path}.{key}".lstrip("."), f"unknown key{hint}; expected one of {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}".lstrip(".")
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path, base_dir)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(key_path, f"missing required key; expected {_type_name(hints[name])}")
    return cls(**kwargs)




def _build_ablations(entries: Any, ovt: dict, base_dir: Path) -> list[OVTAblation]:
    """`ovt_ablations`: a list of `{name: ..., <ovt key>: value, ...}`, each applied over the run's `ovt`."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        fail("ovt_ablations", f"expected a list of {{name: ..., <ovt key>: value}}, got {type(entries).__name__}")
    out, names = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            fail(f"ovt_ablations[{i}]", f"expected a mapping with a name and ovt keys, got {entry!r}")
        name = entry["name"]
        if name in names or not name.replace("_", "").replace(".", "").isalnum():
            fail(f"ovt_ablations[{i}].name", f"expected a unique name of letters, digits, '_' and '.', got {name!r}")
        names.add(name)
        changes = {k: v for k, v in entry.items() if k != "name"}
        out.append(OVTAblation(name, _build(OVTConfig, {**ovt, **changes}, f"ovt_ablations[{i}]", base_dir)))
    return out


def config_from_dict(data: Any, base_dir: Path | str = ".", source_path: str | None = None) -> RunConfig:
    """Validate a parsed YAML mapping; raises `ConfigError` naming the bad key."""
    data = dict(data) if isinstance(data, dict) else data
    ablations = data.pop("ovt_ablations", None) if isinstance(data, dict) else None
    ovt, distill = (data.get("ovt"), data.get("distill")) if isinstance(data, dict) else (None, None)
    if isinstance(ovt, dict) and "clean_per_batch" in ovt and isinstance(distill or {}, dict) \
            and "clean_per_batch" not in (distill or {}):
        # centroid distillation mixes in clean views as OVT does unless told otherwise (a run without a
        # pretrain split sets ovt.clean_per_batch: 0 once, for both)
        data["distill"] = {**(distill or {}), "clean_per_batch": ovt["clean_per_batch"]}
    cfg = _build(RunConfig, data, "", Path(base_dir))
    cfg.ovt_ablations = _build_ablations(ablations, data.get("ovt") or {}, Path(base_dir))
    cfg.source_path = source_path
    pretrained = cfg.backbone.pretrained
    if pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))) \
            and not pretrained.startswith("hf-hub:"):
        cfg.backbone.pretrained = str((Path(base_dir) / pretrained).resolve())
    check_config(cfg)
    return cfg


def load_config(path: Path | str) -> RunConfig:
    """Read and validate a run YAML. Errors start with the file name and the key's dotted path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass one of params/*.yaml")
    data = _read_params(path, ())
    try:
        return config_from_dict(data, base_dir=path.parent, source_path=str(path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_params(path: Path, chain: tuple[Path, ...]) -> Any:
    """A params file's YAML with what it `extends` (a chain of them, e.g. a sweep variant of a variant) under it."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and "extends" in data:  # another params file, with this one's keys over it
        base = Path(path.parent / str(data.pop("extends")))
        if not base.is_file():
            raise ConfigError(f"{path}: extends: {base} does not exist; give a params file relative to {path.parent}")
        if base.resolve() in chain + (path.resolve(),):
            cycle = " -> ".join(p.name for p in chain + (path.resolve(), base.resolve()))
            raise ConfigError(f"{path}: extends: a cycle ({cycle})")
        inherited = _read_params(base, chain + (path.resolve(),)) or {}
        if not isinstance(inherited, dict):
            raise ConfigError(f"{path}: extends: {base} holds a {type(inherited).__name__}, not a mapping of "
                              "settings; point extends at a params file such as params/default.yaml")
        data = _deep_merge(inherited, data)
    return data


def _deep_merge(base: dict, over: dict) -> dict:
    """`over`'s keys over `base`'s, mappings merged key by key (lists and values replaced)."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (_deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict)
                       else value)
    return merged


def dump_config_text(cfg: RunConfig) -> str:
    """The validated config (defaults filled in) as YAML."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def dump_config(cfg: RunConfig, path: Path | str) -> None:
    """Write the validated config as YAML, atomically."""
    atomic_write_text(Path(path), dump_config_text(cfg))
