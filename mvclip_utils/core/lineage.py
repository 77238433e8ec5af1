"""Which config settings each notebook's outputs are made from, and which earlier notebooks' outputs it reads.

A partial rerun (`mvclip run --only 04`) with a changed config would otherwise report numbers made from
the old settings under the new config's name. `stale_inputs` compares the config a run is about to use
with the config each notebook it reads from last ran with (`configs/NN_slug.yaml`, written by the
runner), on the settings that notebook's outputs are made from, and names the first notebook to rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .config import dump_config_text
from .runs import RunLayout
from .schema import RunConfig

# The settings (dotted prefixes) that change what each notebook writes, by notebook number.
MADE_FROM: dict[int, tuple[str, ...]] = {
    1: ("seed", "dataset", "render"),
    2: ("backbone",),
    3: ("embed",),
    5: ("heads",), 6: ("heads",), 7: ("heads",),
    8: ("ovt", "ovt_ablations"),
    9: ("probes",),
    10: ("decoding",),
    11: ("segmentation",),
    12: ("distill",),
}
# Settings that change how a notebook works, not what it writes: worker counts, devices, inference batch
# sizes, timeouts, names.
NOT_OUTPUTS = ("render.workers", "render.objects_per_worker", "render.max_attempts",
               "dataset.objaverse.download_processes", "backbone.device", "backbone.pretrain.torch_threads",
               "embed.batch_size", "embed.loader_workers", "pipeline", "run_name")
# The earlier notebooks whose outputs each notebook reads (13 reads every results row, each of which
# carries its own provenance and is listed as stale when it no longer matches).
READS: dict[int, tuple[int, ...]] = {
    2: (1,), 3: (1, 2), 4: (1, 2, 3), 5: (1, 2, 3), 6: (1, 2, 3), 7: (1, 2, 3), 8: (1, 2, 3),
    9: (1, 2, 3, 8), 10: (1, 2), 11: (1, 2), 12: (1, 2, 3), 13: (1, 2, 3),
}


@dataclass(frozen=True)
class StaleSetting:
    setting: str  # dotted key
    now: Any  # in the config about to run
    then: Any  # in the config the earlier notebook made its outputs with
    made_by: str  # that notebook's stem, e.g. 01_render


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _governed(key: str, prefixes: tuple[str, ...]) -> bool:
    def under(p: str) -> bool:
        return key == p or key.startswith(p + ".")

    return any(under(p) for p in prefixes) and not any(under(p) for p in NOT_OUTPUTS)


def stale_inputs(cfg: RunConfig, layout: RunLayout, stems: dict[int, str], selected: list[int]) -> list[StaleSetting]:
    """Every setting on which `cfg` differs from the config that made an input of a selected notebook,
    for the inputs that this run does not remake (their notebook is not selected). `stems`: every
    notebook's number -> stem. A notebook that never ran (no recorded config) is not compared."""
    now = _flat(yaml.safe_load(dump_config_text(cfg)))
    stale: dict[tuple[str, str], StaleSetting] = {}
    for number in selected:
        for earlier in READS.get(number, ()):
            if earlier in selected or earlier not in stems or earlier not in MADE_FROM:
                continue
            recorded = layout.notebook_config(stems[earlier])
            if not recorded.exists():
                continue
            then = _flat(yaml.safe_load(recorded.read_text()))
            for key in sorted(set(now) | set(then)):
                if _governed(key, MADE_FROM[earlier]) and now.get(key) != then.get(key):
                    stale.setdefault((stems[earlier], key),
                                     StaleSetting(key, now.get(key), then.get(key), stems[earlier]))
    return sorted(stale.values(), key=lambda s: (s.made_by, s.setting))


def describe_stale(stale: list[StaleSetting], config_path: str, last: int) -> str:
    """One line: the first changed setting, how many more, and the rerun that makes the inputs current."""
    first = stale[0]
    others = ", ".join(s.setting for s in stale[1:4]) + (", ..." if len(stale) > 4 else "")
    more = f" (and {len(stale) - 1} more: {others})"
    return (f"{first.setting} is {first.now!r} in {config_path} but {first.made_by} made its outputs with "
            f"{first.then!r}{more if len(stale) > 1 else ''}: rerun from {first.made_by} (mvclip run --config "
            f"{config_path} --only {first.made_by[:2]}-{last:02d}) or set it back")
