"""`pgti data synth`: generate a realistic synthetic traffic dataset (see synth.py)."""
from __future__ import annotations

import sys
import time

from pgti.errors import UserError
from pgti.outputs import add_force_argument, check_output


def add_arguments(p) -> None:
    from pgti.data.synth import PRESETS

    sizes = ", ".join(f"{k} ({n} x {t})" for k, (n, t, _) in PRESETS.items())
    p.add_argument("--preset", default="tiny", choices=list(PRESETS), help=f"size preset: {sizes}")
    p.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    add_force_argument(p)
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes")
    p.add_argument("--nodes", type=int, help="override the number of sensors")
    p.add_argument("--steps", type=int, help="override the number of time steps")
    p.add_argument("--channels", type=int, help="1 = speed; 2 adds flow; 3 adds occupancy")
    p.add_argument("--interval", type=int, dest="interval_seconds", help="seconds per step (default 300)")
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: the preset's)")
    p.add_argument("--no-missing", action="store_true", help="no missing readings (clean data)")
    p.add_argument("--compression", choices=["gzip", "lzf"], help="HDF5 compression (default none: fastest reads)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args) -> int:
    from pgti.data.synth import generate, preset_spec

    try:
        spec = preset_spec(
            args.preset, seed=args.seed, num_nodes=args.nodes, num_steps=args.steps, channels=args.channels,
            interval_seconds=args.interval_seconds, start=args.start,
            missing=False if args.no_missing else None,
        )
    except ValueError as exc:
        raise UserError(f"pgti data synth: {exc}") from None
    try:
        _ = spec.start_unix  # validates the date
    except ValueError as exc:
        raise UserError(f"pgti data synth: --start {spec.start}: {exc}; give a real date, YYYY-MM-DD") from None
    check_output(args.out, force=args.force)
    began = time.perf_counter()
    path = generate(spec, args.out, compression=args.compression, progress=not args.quiet and sys.stderr.isatty())
    if not args.quiet:
        print(f"wrote {path} in {time.perf_counter() - began:.1f} s")
        from pgti.data.format import open_dataset
        from pgti.data.info import describe

        print(describe(open_dataset(path), scan=False))
    return 0
