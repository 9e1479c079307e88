"""``relama-bench run`` and ``relama-bench report``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bench.run.config import LATEST_LINK, RunConfig, check_run_id
from bench.run.data import DEFAULT_DATA_NAME, DEFAULT_MAX_SIDE, LARGEST_SIDE, SMALLEST_SIDE
from bench.errors import UserError
from bench.run.rundir import RunDir
from bench.report.build import build_report
from bench.run import distributed
from bench.run.plan import format_plan, plan_run, read_perf_table
from bench.run.runner import USER_CASE, Runner, default_worker_count
from bench.cli.options import (add_data_domain_argument, add_device_argument, add_metric_weights_arguments,
                               comma_list, default_run_methods, method_names, parse_weights_options)
from bench.metrics.backbones import offline_from_environment
from bench.metrics.pixel import DEFAULT_SSIM, SSIM_CONVENTIONS
from bench.run.fetch import FetchedWeightsChanged, fetch_command, fetchable, fetched_weights
from bench.run.scoring import provision_learned_metrics
from masks import nvidia
from masks.cases import CASES, LAMA, SUITE
from masks.io import MaskFileError
from methods.base import Family
from methods.registry import get_method_class

#: Bounds of the numeric options, checked before anything is allocated.
MAX_SAMPLES = 100
MAX_SEED = 2**32 - 1
MAX_FIGURE_ROWS = 64
MAX_WORKERS = 256

SUITE_CASES = [name for name, case in CASES.items() if case.family == SUITE]
LAMA_CASES = [name for name, case in CASES.items() if case.family == LAMA]


def add_command(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run methods over images and mask cases, score them, write a report")
    run.add_argument("--cases", default=None,
                     help=f"comma-separated mask cases: the suite's {', '.join(SUITE_CASES)}; LaMa's evaluation "
                          f"protocol {', '.join(LAMA_CASES)}; with --masks-protocol nvidia=DIR the NVIDIA area "
                          f"blocks {', '.join(nvidia.CASES)}. Default: {', '.join(SUITE_CASES)} (the six NVIDIA "
                          "blocks with --masks-protocol nvidia=DIR)")
    run.add_argument("--masks-protocol", action="append", default=[], metavar="NAME=DIR",
                     help="a published mask set to evaluate on: nvidia=DIR (Liu et al. 2018's 12,000 irregular "
                          "test masks, 00000.png ... 11999.png, white = hole)")
    run.add_argument("--ssim", choices=sorted(SSIM_CONVENTIONS), default=DEFAULT_SSIM,
                     help=f"SSIM convention (default {DEFAULT_SSIM}: LaMa's evaluation, zero padding, whole-image "
                          "mean; skimage: scikit-image's, reflect padding, mean without the 5-pixel border)")
    run.add_argument("--methods", default=None,
                     help="comma-separated method names (see `relama-bench list`); default: every method "
                          "meant for the default run, skipping those that cannot run here")
    run.add_argument("--data", type=Path, default=None,
                     help=f"folder of images; default: the embedded {DEFAULT_DATA_NAME}")
    add_data_domain_argument(run)
    run.add_argument("--masks", type=Path, default=None,
                     help="folder of your own masks, one per image (STEM.png, white = hole, or labelme STEM.json); "
                          "replaces the generated cases with one case called 'user'")
    run.add_argument("--mask-invert", action="store_true", help="with --masks: dark pixels are holes")
    run.add_argument("--mask-threshold", type=int, default=0,
                     help="with --masks: grey values above this (0-255) are holes; default 0 (any non-zero grey)")
    run.add_argument("--limit", type=int, default=None, help="use only the first N images")
    run.add_argument("--size", type=int, default=None,
                     help="resize the shorter side to S and centre-crop S x S; default: keep the size, "
                          "downscaling images whose long side exceeds --max-side")
    run.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                     help=f"long-side cap of the default size policy (default {DEFAULT_MAX_SIDE})")
    run.add_argument("--seed", type=int, default=0, help="seed of masks and stochastic methods (default 0)")
    run.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                     help="weights of a deep method, e.g. lama=big-lama/models/best.ckpt (repeatable)")
    run.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="an adapter option, e.g. telea.radius=5 or pluralistic.spectral_state=carry (repeatable)")
    run.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                     help="arithmetic of the deep methods: fp32 (default, exact), bf16 (CPU/CUDA) or fp16 (CUDA): "
                          "faster, outputs move by a few grey levels; every deep method of the run must support it")
    run.add_argument("--samples", type=int, default=1,
                     help="completions per image drawn by methods that can sample (pluralistic, ict); with 2 or "
                          "more the report adds their diversity (mean pairwise LPIPS) and sample grids")
    run.add_argument("--no-learned-metrics", action="store_true",
                     help="skip LPIPS, FID and KID (pixel metrics only); a later rerun without it adds them")
    add_metric_weights_arguments(run)
    run.add_argument("--workers", type=int, default=default_worker_count(),
                     help="processes for CPU (traditional) methods")
    run.add_argument("--figure-rows", type=int, default=8, help="images shown in each figure grid")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    run.add_argument("--run-id", default=None,
                     help="name of the run directory; default: derived from the arguments, so a rerun resumes")
    run.add_argument("--run-dir-shared", choices=("auto", "yes", "no"), default="auto",
                     help="under torchrun: whether every rank sees one run directory (shared filesystem); "
                          "with 'no' each rank sends its files to rank 0; default: find out")
    run.add_argument("--reference", default=None, help="reference method of paired comparisons (default lama, else telea)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--save-predictions", choices=("all", "grids", "none", "auto"), default="auto",
                     help="which predictions to keep in pred/: all, grids (those the figures show) or none; "
                          "default auto: all up to 50,000 jobs, else grids")
    run.add_argument("--dry-run", action="store_true",
                     help="print the job count, predicted inference time per method and disk space, run nothing")
    run.add_argument("--perf", type=Path, default=None,
                     help="with --dry-run: a perf.csv from `relama-bench perf` on this machine, for the times")
    add_device_argument(run)
    run.set_defaults(func=run_command)

    report = subparsers.add_parser("report", help="re-render the report of a finished run from its cached results")
    report.add_argument("run_dir", type=Path, help="a run directory, e.g. runs/latest")
    report.add_argument("--reference", default=None, help="reference method of paired comparisons")
    report.set_defaults(func=report_command)


def _check_range(option: str, value: int | None, low: int, high: int, meaning: str) -> None:
    if value is not None and not low <= value <= high:
        raise UserError(f"{option} {value} is out of range: pass {meaning} from {low} to {high}")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    methods = method_names(args.methods, default_run_methods(args.data_domain))
    protocols = parse_mask_protocols(args.masks_protocol)
    if args.masks is not None:
        if protocols:
            raise UserError("--masks and --masks-protocol both choose the masks: pass one of them")
        if args.cases is not None:
            raise UserError("--cases does not apply with --masks (your masks form the one case 'user'): drop one of them")
        if not args.masks.is_dir():
            raise UserError(f"mask folder {args.masks} does not exist: pass --masks DIR with one mask per image")
        cases = [USER_CASE]
    else:
        cases = parse_cases(args.cases, protocols)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit} selects no image: pass a positive number or leave it out")
    _check_range("--samples", args.samples, 1, MAX_SAMPLES, "a number of completions")
    _check_range("--size", args.size, SMALLEST_SIDE, LARGEST_SIDE, "a side in pixels")
    _check_range("--max-side", args.max_side, SMALLEST_SIDE, LARGEST_SIDE, "a side in pixels")
    _check_range("--mask-threshold", args.mask_threshold, 0, 254, "a grey level (holes are greys above it)")
    _check_range("--seed", args.seed, 0, MAX_SEED, "a seed")
    _check_range("--figure-rows", args.figure_rows, 1, MAX_FIGURE_ROWS, "a number of images")
    _check_range("--workers", args.workers, 1, MAX_WORKERS, "a number of processes")
    if args.reference is not None and args.reference not in methods:
        raise UserError(f"--reference {args.reference!r} is not a method of this run: pass one of {', '.join(methods)}")
    if args.run_id is not None:
        check_run_id(args.run_id)
    weights = {name: str(path) for name, path in parse_weights_options(args.weights).items()}
    for name in weights:
        if name not in methods:
            raise UserError(f"--weights names {name}, which this run does not include: add it to --methods")
        if get_method_class(name).weights_record is None:
            raise UserError(f"--weights gives {name} a file, but {name} uses no weights: drop that --weights")
    for name in methods:
        if name not in weights:
            try:
                fetched = fetched_weights(name)
            except FetchedWeightsChanged as error:
                raise UserError(str(error)) from None
            if fetched is not None:
                weights[name] = str(fetched)
    return RunConfig(
        methods=methods, cases=cases, data=str(args.data) if args.data else None,
        masks=str(args.masks) if args.masks else None, mask_invert=args.mask_invert,
        mask_threshold=args.mask_threshold, limit=args.limit, size=args.size, max_side=args.max_side,
        seed=args.seed, weights=weights, learned_metrics=not args.no_learned_metrics, samples=args.samples,
        options=precision_options(args.precision, methods, parse_method_options(args.option, methods)),
        workers=args.workers, figure_rows=args.figure_rows,
        runs_root=str(args.runs_dir), run_id=args.run_id, device=args.device, ssim=args.ssim,
        mask_protocols=protocols, run_dir_shared=args.run_dir_shared, save_predictions=args.save_predictions,
    )


def parse_mask_protocols(values: list[str]) -> dict[str, str]:
    """``NAME=DIR`` options to ``{name: folder}``; the folder is checked now, not mid-run."""
    protocols: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or name != nvidia.PROTOCOL or not folder:
            raise UserError(f"--masks-protocol {value!r} is not nvidia=DIR: the one published mask set supported is "
                            "NVIDIA's irregular test masks (pass the folder holding 00000.png ... 11999.png)")
        if name in protocols:
            raise UserError(f"--masks-protocol {name}= is given twice: pass it once")
        try:
            nvidia.check_folder(folder)
        except MaskFileError as error:
            raise UserError(str(error)) from None
        protocols[name] = str(Path(folder).resolve())
    return protocols


def parse_cases(value: str | None, protocols: dict[str, str]) -> list[str]:
    """The cases of ``--cases`` (default: the suite's three, or the NVIDIA blocks with that protocol)."""
    if value is None:
        return list(nvidia.CASES) if nvidia.PROTOCOL in protocols else SUITE_CASES
    cases = comma_list(value, "--cases")
    known = [*CASES, *(nvidia.CASES if nvidia.PROTOCOL in protocols else [])]
    for case in cases or [""]:
        if case in nvidia.CASES and nvidia.PROTOCOL not in protocols:
            raise UserError(f"case {case!r} reads the NVIDIA mask set: add --masks-protocol nvidia=DIR")
        if case not in known:
            raise UserError(f"unknown mask case {case!r}; known cases: {', '.join(known)}")
    return cases

def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_method_options(values: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``METHOD.KEY=VALUE`` strings to ``{method: {key: value}}``.

    Values are typed (numbers, true/false, none, else text) and checked against the option the adapter
    declares (`methods.base.Option`: type, choices, range); an option given twice with different values
    is refused.
    """
    options: dict[str, dict[str, Any]] = {}
    given: dict[tuple[str, str], str] = {}
    for value in values:
        target, sep, raw = value.partition("=")
        method, dot, key = target.partition(".")
        if not sep or not dot or not method or not key:
            raise UserError(f"--option {value!r} is not METHOD.KEY=VALUE, e.g. --option telea.radius=5")
        if method not in methods:
            raise UserError(f"--option {value!r} names method {method!r}, which this run does not include: "
                            f"add it to --methods")
        if given.get((method, key), raw) != raw:
            raise UserError(f"--option {method}.{key} is given twice ({given[(method, key)]!r} and {raw!r}): "
                            "keep one")
        given[(method, key)] = raw
        declared = get_method_class(method).options
        if key not in declared:
            raise UserError(f"method {method!r} has no option {key!r}; its options: {', '.join(declared) or 'none'}")
        value = _option_value(raw)
        if declared[key].kind is str and value is not None:
            value = raw
        try:
            options.setdefault(method, {})[key] = declared[key].check(value)
        except ValueError as error:
            raise UserError(f"--option {method}.{key}={raw} {error}") from None
    return options


def precision_choices(method: str) -> tuple[str, ...]:
    """The precisions ``method`` runs in: its declared ``precision`` option's choices, else only fp32."""
    option = get_method_class(method).options.get("precision")
    return option.choices if option is not None else ("fp32",)


def precision_options(precision: str, methods: list[str],
                      options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``options`` with ``precision`` set for every deep method of the run (nothing added for ``fp32``).

    The precision becomes a method option, so it is part of the run id and of each job's identity
    and results of different precisions never share a cache entry. A deep method without the
    precision among its ``precision`` option's choices, or a precision also given with
    ``--option``, is an error rather than ignored.
    """
    if precision == "fp32":
        return options
    deep = [name for name in methods if get_method_class(name).family is not Family.TRADITIONAL]
    unsupported = [name for name in deep if precision not in precision_choices(name)]
    if unsupported:
        raise UserError(f"--precision {precision}: method(s) {', '.join(unsupported)} do not run in {precision}; "
                        f"leave them out of --methods, or set it only for the methods that have it with "
                        f"--option METHOD.precision={precision}")
    twice = [name for name in deep if "precision" in options.get(name, {})]
    if twice:
        raise UserError(f"the precision of {twice[0]} is given twice (--precision and --option "
                        f"{twice[0]}.precision); keep one")
    merged = {name: dict(values) for name, values in options.items()}
    for name in deep:
        merged.setdefault(name, {})["precision"] = precision
    return merged


def _check_latest(runs_root: Path) -> Path:
    """The ``latest`` link of the runs folder; refused up front when something else has its name."""
    latest = runs_root / LATEST_LINK
    if (latest.exists() or latest.is_symlink()) and not latest.is_symlink():
        kind = "a folder" if latest.is_dir() else "a file"
        raise UserError(f"{latest} is {kind}, not the link to the newest run that relama-bench keeps there: "
                        "move it away or pass another --runs-dir")
    return latest


def _point_latest(run_dir: Path) -> None:
    latest = _check_latest(run_dir.parent)
    temporary = run_dir.parent / f".latest-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(temporary, latest)


def run_problems(config: RunConfig, outcome, named: bool) -> list[str]:
    """Why the run did not do what was asked: a method named in ``--methods`` that could not run, or a
    method whose every job failed. A method of the default run skipped for missing weights is no problem."""
    problems = []
    for name in config.methods:
        if name in outcome.skipped and named:
            problems.append(f"method {name} could not run: {outcome.skipped[name]}")
        elif name in outcome.method_details and not (outcome.rows["method"] == name).any():
            failures = outcome.errors[outcome.errors["method"] == name]
            if not failures.empty:
                problems.append(f"every job of method {name} failed (first: {failures['error'].iloc[0]}); "
                                f"see {RunDir(outcome.run_dir).errors_path}")
    return problems


def run_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.perf is not None and not args.dry_run:
        raise UserError("--perf is read only by --dry-run: add --dry-run or leave --perf out")
    if args.dry_run:
        return dry_run(config, args.perf)
    return execute_run(config, args, named_methods=args.methods is not None)


def dry_run(config: RunConfig, perf_path: Path | None) -> int:
    """Print what the run would cost; write nothing."""
    ranks = distributed.ranks_from_environment()
    if not ranks.is_main:
        return 0
    runner = Runner(config, progress=False)
    methods, skipped = runner.resolve_methods()
    perf = read_perf_table(perf_path) if perf_path is not None else None
    print(format_plan(plan_run(config, methods, runner.image_sources(), perf), processes=ranks.world_size))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    return 0


def provision_metric_weights(config: RunConfig, args: argparse.Namespace, ranks: distributed.Ranks) -> dict[str, str]:
    """Fetch the LPIPS and Inception weights the run lacks (`provision_learned_metrics`) in one process
    per weights cache while the other ranks wait, then let every rank go on to load them.

    The process is rank 0 when every rank runs on one machine. On several machines it is local rank 0
    of each, since the cache (``~/.cache``) is usually each machine's own disk; on a shared cache their
    fetches replace files atomically, so at worst a package is downloaded more than once.

    Returns
    -------
    dict
        On rank 0, the learned-metric columns that stay unavailable with the reason; empty elsewhere.
    """
    if not config.learned_metrics:
        return {}
    fetches = ranks.is_main or (ranks.local_rank == 0 and ranks.world_size > ranks.local_world_size)
    unavailable = {}
    if fetches:
        offline = args.offline if args.offline is not None else offline_from_environment()
        unavailable = provision_learned_metrics(offline=offline, find_links=args.package_source,
                                                progress=not args.no_progress and ranks.is_main,
                                                log=print if ranks.is_main else _silent)
    ranks.barrier()
    return unavailable if ranks.is_main else {}


def _silent(message: str) -> None:
    """Log of the ranks other than 0: the console shows what rank 0 does."""


def execute_run(config: RunConfig, args: argparse.Namespace, *, named_methods: bool) -> int:
    """Provision the metric weights, run ``config`` (as one rank of a torchrun job when started by
    torchrun), then on rank 0 write the report and print the headline tables. ``args`` gives
    ``no_progress``, ``reference``, ``offline``, ``package_source`` and ``command_line``;
    ``named_methods`` says whether the user chose the methods (a chosen method that cannot run is then
    an error)."""
    if args.package_source is not None and not args.package_source.is_dir():
        raise UserError(f"--package-source {args.package_source} is not a folder: pass a folder of package archives")
    _check_latest(Path(config.runs_root))
    ranks = distributed.ranks_from_environment()
    distributed.start(ranks)
    try:
        unavailable_columns = provision_metric_weights(config, args, ranks)
        for columns, reason in unavailable_columns.items():
            print(f"{columns} unavailable: {reason}")
        runner = Runner(config, progress=not args.no_progress,
                        command=getattr(args, "command_line", "relama-bench run"), ranks=ranks)
        outcome = runner.run()
    finally:
        distributed.stop()
    if not outcome.is_main:
        return 0
    data = build_report(outcome.run_dir, reference=args.reference)
    _point_latest(outcome.run_dir)
    releases = fetchable()
    for name, reason in outcome.skipped.items():
        hint = f"; or run `{fetch_command(name)}`" if name in releases and name not in config.weights else ""
        print(f"skipped {name}: {reason}{hint}")
    if outcome.save_policy != "all":
        print(f"note: predictions saved: {outcome.save_policy} (pass --save-predictions all to keep every one)")
    for case, table in data.case_tables.items():
        # The console shows the headline columns; report.md has them all.
        shown = [column for column in table.columns
                 if column.split(" ")[0] in ("method", "LPIPS", "PSNR", "SSIM", "FID", "N") and "hole" not in column]
        print(f"\ncase {case}\n{table[shown].to_markdown(index=False)}")
    for columns, reason in unavailable_columns.items():
        print(f"\n{columns} columns are missing above: {reason}")
    for line in data.size_limits:
        print(f"\nnote: {line}")
    if not outcome.errors.empty:
        print(f"\n{len(outcome.errors)} job(s) failed; see {runner.paths.errors_path}")
    print(f"\nreport: {runner.paths.markdown_report} and {runner.paths.html_report}")
    problems = run_problems(config, outcome, named=named_methods)
    for problem in problems:
        print(f"relama-bench: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def report_command(args: argparse.Namespace) -> int:
    data = build_report(args.run_dir, reference=args.reference)
    for line in data.meta.get("rebuilt", []):
        print(f"note: {line}")
    paths = RunDir(data.run_dir)
    print(f"report: {paths.markdown_report} and {paths.html_report}")
    return 0
