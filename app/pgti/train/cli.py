"""`pgti train`: train a model, single process or under mpirun / srun / mpiexec.

    pgti train --config FILE [--set section.key=value ...] [--run-dir DIR] [--resume auto|PATH]
    pgti train --config FILE --dry-run      # validate and print the plan; no training

Exit statuses: 0 done, 1 diverged or failed, 2 bad input or the run directory in use by
another job (one line says what), 75 checkpointed after a signal or at the walltime
("resubmit me": run the same command again; `--resume auto` continues).
"""
from __future__ import annotations

import logging
from pathlib import Path

from pgti import __version__


def add_arguments(p) -> None:
    p.add_argument("--config", help="TOML config (see jobs/configs/); omitted: defaults + --set")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set train.lr=0.001")
    p.add_argument("--run-dir", help="output directory (default runs/<config name>)")
    p.add_argument("--resume", help="auto: the newest valid checkpoint of --run-dir if any; or a checkpoint PATH")
    p.add_argument("--resume-ignore-config", action="store_true",
                   help="resume even if the checkpoint was made with a different configuration")
    p.add_argument("--dry-run", action="store_true", help="validate the config and print the plan, then exit")
    p.add_argument("--lock-wait", type=float, default=300.0, metavar="SECONDS",
                   help="when an earlier start of this same batch job (a requeue) still holds the run directory, "
                        "wait this long for it to exit (default 300); another job's run is refused at once")


def default_run_dir(args) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    return Path("runs") / (Path(args.config).stem if args.config else "default")


def run(args) -> int:
    from pgti.allocator import configure_allocator
    from pgti.config import load_config
    from pgti.distributed.failfast import keep_exit_status
    from pgti.distributed.world import abort_on_error, configure_threads, init_world, run_on_root, setup_logging
    from pgti.train.signals import StopRequest

    stop = StopRequest().__enter__()  # first thing: a job's signal must never kill us mid-setup
    world = init_world()
    with abort_on_error(world):
        cfg = run_on_root(world, load_config, args.config, args.set)  # a mistake: one message, not one per rank
        run_dir = default_run_dir(args)
        if args.dry_run:
            from pgti.distributed.engine import check_engine_installed

            run_on_root(world, check_engine_installed, cfg.dist.engine)
            if world.rank == 0:
                from pgti.train.plan import describe_plan

                print(describe_plan(cfg, world.size, world.num_nodes))
            return 0
        from pgti.distributed.shared_fs import check_visible_on_every_node
        from pgti.train.lock import hold, release_held
        from pgti.train.loop import train
        from pgti.train.rundir import RunDir

        # one job per run directory, taken before anything is written there
        taken_over = run_on_root(world, hold, run_dir, args.lock_wait, lambda: stop.reason)
        run_on_root(world, RunDir(run_dir).prepare)
        check_visible_on_every_node(world, run_dir)  # a requeue on other nodes must find the checkpoints
        run_on_root(world, RunDir(run_dir).check_start, args.resume)  # before anything is written there
        setup_logging(world, log_file=run_dir / "train.log", verbose=cfg.log.verbose)
        threads = configure_threads(world)
        if taken_over and world.rank == 0:
            logging.getLogger("pgti.train").warning("%s", taken_over)
        logging.getLogger("pgti.train").info("pgti %s: %d rank(s), %d torch thread(s) per rank, malloc %s",
                                             __version__, world.size, threads, configure_allocator())
        status = train(cfg, RunDir(run_dir), world, resume=args.resume, ignore_config=args.resume_ignore_config,
                       stop=stop)
        logging.getLogger("pgti.train").info("exit status %d", status)
        keep_exit_status()  # every rank's status is agreed: a launcher's SIGTERM must not change it
        release_held()
        return status
