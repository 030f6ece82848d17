"""The ``qmoe`` command: parses arguments and calls the experiments."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .errors import ConfigError, QMoEError, choices, seed_range
from .names import (
    AGGREGATIONS,
    ANSATZE,
    DATASETS,
    EXPERTS,
    RETRAIN_DEFAULTS,
    ROUTING_DEFAULTS,
    ROUTING_TASKS,
    ROUTERS,
    TRAIN_DEFAULTS,
    describe_training,
)

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line (``qmoe train: error: ...``), not usage plus error;
    ``--help`` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _numbers(kind: type, what: str, one: str):
    """An argparse type: comma-separated values of ``kind`` (at least one)."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one {one}")
        return values
    return parse


class _Deprecated(argparse.Action):
    """An old spelling of an option: stores into the new option's destination and warns, once
    per use, on stderr. Kept for one version."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in "
              f"the next version; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _alias(p, old: str, new: str, dest: str, **kwargs) -> None:
    """``old`` as a deprecated spelling of ``new`` (whose destination is ``dest``)."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, default=argparse.SUPPRESS,
                   help=f"deprecated spelling of {new}", **kwargs)


# Old spellings that meant different things in different commands, and what replaced them.
# Each option name now has one meaning across the command line (tests/test_newcomer.py).
RENAMED = {
    ("ablation", "--noise"): "--data-noise", ("train", "--noise"): "--data-noise",
    ("sweep", "--noise"): "--noise-model",
    ("run", "--samples"): "--limit", ("compare", "--samples"): "--limit",
    ("run", "--seed"): "--transpiler-seed", ("compare", "--seed"): "--transpiler-seed",
}


_ints = _numbers(int, "integers", "integer")
_floats = _numbers(float, "numbers", "number")
_names = _numbers(str.strip, "names", "name")


def _data_args(p: argparse.ArgumentParser, default_dataset: str = "moons") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=default_dataset)
    g.add_argument("--samples", type=int, default=1000,
                   help="dataset size: samples to draw or keep (default 1000)")
    g.add_argument("--data-noise", type=float, default=0.1,
                   help="moons / circles: the noise of the generated points (default 0.1)")
    _alias(g, "--noise", "--data-noise", "data_noise", type=float)
    g.add_argument("--classes", type=_ints, default=None,
                   help="digits / MNIST labels to keep, e.g. 0,1")
    g.add_argument("--features", type=int, default=None, help="PCA to this many features")
    g.add_argument("--data-dir", default=None,
                   help="the data folder: it holds mnist/ and fashion_mnist/ with the IDX "
                        "files (a folder holding the IDX files themselves is also taken)")


def _data_spec(args, seed: int):
    from .data import DataSpec

    return DataSpec(dataset=args.dataset, n_samples=args.samples, noise=args.data_noise,
                    classes=args.classes, n_features=args.features, seed=seed,
                    data_dir=args.data_dir)


def _train_args(p: argparse.ArgumentParser, title: str = "training",
                defaults: dict = TRAIN_DEFAULTS) -> None:
    g = p.add_argument_group(f"{title} (defaults: {describe_training(defaults)})")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience in epochs (0 disables early stopping)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads while training (default: 1 for circuits under 10 "
                        "qubits, else torch's default)")


def _train_config(args, seed: int, base=None):
    """``base`` (default: TrainConfig()) with the training flags that were given."""
    from .training import TrainConfig

    given = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr),
                               ("batch_size", args.batch_size), ("threads", args.threads))
             if v is not None}
    if args.patience is not None:
        given["patience"] = args.patience or None
    return dataclasses.replace(base or TrainConfig(), seed=seed, **given)


def _study_dry_run_arg(p, what: str) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help=f"plan the {what}, time one training step of each model, print about "
                        f"how long it would take if every epoch ran, and run nothing")


def _output_args(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--out", default=None, help=f"run folder (default runs/{command}-<timestamp>); "
                                               "a folder that holds files is refused")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out folder (never one holding this run's input)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the cells run")
    g.add_argument("--executor", choices=("serial", "ray"), default="serial",
                   help="serial: this process (default); ray: a local Ray instance, or the "
                        "cluster at --ray-address (needs the 'ray' extra: "
                        "bash scripts/setup.sh --test)")
    g.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (host:port, ray://host:port or auto; default: "
                        "$RAY_ADDRESS, else a local instance)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qmoe", description="Quantum mixture-of-experts toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ablation", help="compare routers A / B / C / D over several seeds")
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, MLP widths 4 and 16, 25 epochs (explicit flags still apply)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    p.add_argument("--widths", type=_ints, default=None, help="MLP router widths (default 2,4,8,16,32)")
    p.add_argument("--layers", type=int, default=3, help="router circuit layers (default 3)")
    p.add_argument("--models", type=_names, default=None,
                   help="comma-separated subset, e.g. A,B_sel,D")
    _data_args(p)
    _train_args(p)
    _study_dry_run_arg(p, "ablation")
    _output_args(p, "ablation")
    _executor_args(p)

    p = sub.add_parser("train", help="train one model and save it")
    p.add_argument("--router", choices=ROUTERS, default="quantum")
    p.add_argument("--ansatz", choices=ANSATZE, default="sel")
    p.add_argument("--qubits", type=int, default=None, help="router qubits (default: one per feature)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=8, help="MLP router width")
    p.add_argument("--expert", choices=EXPERTS, default="linear")
    p.add_argument("--experts", type=int, default=2, help="number of experts")
    p.add_argument("--top-k", type=int, default=None,
                   help="keep each input's k largest gates (default: dense)")
    p.add_argument("--balance-weight", type=float, default=0.0,
                   help="weight of the Switch load-balancing loss in training (default 0: "
                        "none; 0.01 is the Switch Transformer's)")
    p.add_argument("--capacity", type=float, default=None,
                   help="expert capacity factor: each expert takes at most factor x batch x "
                        "k / experts inputs of a batch, an input whose choice is full falls "
                        "back to its next expert, and one with no room is dropped (default: "
                        "no capacity)")
    p.add_argument("--aggregation", choices=AGGREGATIONS, default="classical",
                   help="classical: mix the experts' measured outputs; coherent: router and "
                        "quantum experts in one circuit, their amplitudes superposed and read "
                        "out postselected on the routing register (needs --ansatz paper, "
                        "--expert quantum or reupload, 2/4/8 experts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-from", default=None, metavar="COMPARE_DIR",
                   help="train under the noise model qmoe compare fitted to a backend's counts "
                        "(then run on that backend again)")
    p.add_argument("--noise-model", default=None,
                   help="with --noise-from: which fit, best (the more likely; the default), "
                        "device_scaled_fit or depolarizing_fit")
    p.add_argument("--mitigate", default=None, metavar="TECHNIQUE",
                   help="with --noise-from: the technique the model will run with; readout or "
                        "trex: train under the fit without its readout errors")
    p.add_argument("--calibrate-on", default=None, metavar="RUN_DIR",
                   help="retrain only the classical parts (the <Z> adapter, classical experts) "
                        "of the model a 'qmoe run --split train' measured, on the outputs its "
                        "circuits gave there; the quantum weights stay (default 300 epochs, lr "
                        "0.02)")
    p.add_argument("--model", default=None,
                   help="with --calibrate-on: the model to calibrate (default: the run's; it "
                        "must be the one the run measured)")
    _data_args(p)
    _train_args(p)
    _output_args(p, "train")

    p = sub.add_parser("evaluate", help="score a saved model on its held-out test split")
    p.add_argument("--model", required=True, help="model file or run folder holding model.pt")
    p.add_argument("--no-progress", action="store_true",
                   help="accepted as by every command (evaluate shows no progress bar)")

    p = sub.add_parser("sweep", help="a trained model's accuracy under Aer noise, level by level")
    p.add_argument("--model", required=True, help="model file or run folder holding model.pt")
    p.add_argument("--noise-model", default="depolarizing",
                   help="'depolarizing' or an offline fake backend (fake_brisbane, fake_torino, "
                        "fake_manila, ...) for its calibrated noise")
    _alias(p, "--noise", "--noise-model", "noise_model")
    p.add_argument("--levels", type=_floats, default=None,
                   help="depolarizing epsilons (default 0,0.005,0.01,0.02,0.03,0.05)")
    p.add_argument("--scales", type=_floats, default=None,
                   help="device error-rate factors (default 0.5,1,2,4)")
    p.add_argument("--shots", type=int, default=None,
                   help="sample this many shots per input (default: exact density matrix)")
    p.add_argument("--repetitions", type=int, default=5, help="repetitions with --shots (default 5)")
    p.add_argument("--retrain", action="store_true",
                   help="train a fresh model under each noise level instead of evaluating one")
    p.add_argument("--engine", default="auto",
                   help="auto (default): the fast engine (faster at every width measured), "
                        "Aer where its memory does not fit; "
                        "fast: batched density matrix with reverse-mode gradients; "
                        "aer: Aer's density-matrix simulator with parameter shift")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip training the classical baseline shown in the plot")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the retraining and the baseline, the transpiler and the "
                        "sampler (default 0)")
    p.add_argument("--dry-run", action="store_true",
                   help="plan the sweep, time one training step and one forward pass, print "
                        "how long it would take, and run nothing")
    _train_args(p, "with --retrain: the model trained at each level", RETRAIN_DEFAULTS)
    _output_args(p, "sweep")
    _executor_args(p)

    p = sub.add_parser("run", help="a trained model's test accuracy on an IBM Quantum backend "
                                   "(or a fake backend, offline)")
    p.add_argument("--model", required=True, help="model file or run folder holding model.pt")
    p.add_argument("--backend", required=True,
                   help="IBM Quantum backend (ibm_brisbane, ...) or fake backend (fake_manila, "
                        "fake_brisbane, ...: the runtime's local testing mode)")
    _run_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print circuits, bindings, shots and estimated QPU time; submit nothing")
    _account_args(p)
    _output_args(p, "run")

    p = sub.add_parser("compare", help="which noise model explains a run's measurements, "
                                       "as a goodness-of-fit test: ideal, device, readout only, "
                                       "and fitted depolarizing, device scale, gate and readout "
                                       "scales, per-qubit readout")
    p.add_argument("--run", default=None, help="a finished qmoe run folder")
    p.add_argument("--model", default=None,
                   help="or: run this model first (with --backend and the run options)")
    p.add_argument("--backend", default=None, help="the backend to run --model on")
    _run_args(p)
    p.add_argument("--quick", action="store_true",
                   help=f"with --model: a short run ({QUICK_COMPARE_SAMPLES} test samples unless "
                        f"--limit is given)")
    p.add_argument("--alpha", type=float, default=0.01,
                   help="level of the goodness-of-fit test: a model explains the hardware "
                        "unless the test rejects it at this level (default 0.01)")
    p.add_argument("--models", type=_names, default=None,
                   help="comma-separated noise models to fit, e.g. ideal,device_scaled_fit "
                        "(default: every one the calibration allows)")
    p.add_argument("--idle-noise", action=argparse.BooleanOptionalAction, default=True,
                   help="device models relax while qubits idle, on the circuits scheduled with "
                        "the device's durations (default: on)")
    p.add_argument("--tolerance", type=float, default=None, help=argparse.SUPPRESS)
    _account_args(p)
    _output_args(p, "compare")
    _executor_args(p)

    p = sub.add_parser("reproduce", help="every claim of both QMoE papers beside a held-out "
                                         "measurement, with a verdict")
    p.add_argument("--claims", type=_ints, default=None,
                   help="claim numbers to run, e.g. 1,2 (default: all, 1-8)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, 6 epochs, a few Figure 2 points: every claim gets a verdict "
                        "in minutes (indicative only)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding mnist/ and/or fashion_mnist/ with their IDX files "
                        "(default: the scikit-learn digits stand-in, labelled as such; "
                        "Fashion-MNIST not run)")
    _study_dry_run_arg(p, "reproduction")
    _output_args(p, "reproduce")
    _executor_args(p)
    p.epilog = ("Finished cells are kept beside the run folder as they finish: run the same "
                "command with the same --out to resume an interrupted run.")

    p = sub.add_parser("study", help="studies that answer a question: routing (which routing "
                                     "feature of a quantum mixture helps, where, by how much)")
    p.add_argument("study", choices=("routing",), help="the study to run")
    p.add_argument("--tasks", type=_names, default=None,
                   help=f"comma-separated subset of {', '.join(ROUTING_TASKS)} (default: all "
                        f"whose data is here; the MNIST tasks need --data-dir)")
    p.add_argument("--variants", type=_names, default=None,
                   help="comma-separated subset of the variants (default: all 13; an unknown "
                        "name lists them)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    p.add_argument("--quick", action="store_true",
                   help="2 seeds, 3 epochs, 200 samples (210 per MNIST task): every variant "
                        "and verdict in minutes (indicative only)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding mnist/ with its IDX files (runs mnist38 and mnist4)")
    _train_args(p, defaults=ROUTING_DEFAULTS)
    _study_dry_run_arg(p, "study")
    _output_args(p, "routing")
    _executor_args(p)
    p.epilog = ("Finished cells are kept beside the run folder as they finish: run the same "
                "command with the same --out to resume an interrupted run.")

    p = sub.add_parser("jobs", help="jobs recorded in the ledger: list, status, fetch")
    p.add_argument("action", nargs="?", choices=("list", "status", "fetch"),
                   help="list: the ledger; status: ask IBM Quantum; fetch: results into the cache")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID",
                   help="job ids or tags (optional; default: every recorded job)")
    _account_args(p)
    p.add_argument("--no-progress", action="store_true",
                   help="accepted as by every command (jobs shows no progress bar)")
    return parser


QUICK_COMPARE_SAMPLES = 40


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shots", type=int, default=1024, help="shots per sample (default 1024)")
    p.add_argument("--limit", type=int, default=None, metavar="K",
                   help="use only the first K samples of --split (default: all)")
    _alias(p, "--samples", "--limit", "limit", type=int)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: the held-out samples (default); train: training samples, for "
                        "qmoe train --calibrate-on RUN_DIR")
    p.add_argument("--optimization-level", type=int, default=1, choices=(0, 1, 2, 3))
    p.add_argument("--transpiler-seed", type=int, default=0,
                   help="transpiler seed, and in local testing mode the simulator's (default 0)")
    _alias(p, "--seed", "--transpiler-seed", "transpiler_seed", type=int)
    p.add_argument("--layout", type=_ints, default=None,
                   help="physical qubits, one per circuit qubit (default: lowest calibrated "
                        "error)")
    p.add_argument("--twirling", action="store_true", help="Pauli-twirl gates and measurements")
    p.add_argument("--dd", action="store_true", help="dynamical decoupling (XX)")
    p.add_argument("--noise-scale", type=float, default=None,
                   help="with a fake backend: a stand-in whose noise is the device's with every "
                        "error rate times this (a known truth for rehearsing a study offline)")
    p.add_argument("--readout-scale", type=float, default=None,
                   help="with --noise-scale: the stand-in's readout errors times this instead "
                        "(gates times --noise-scale)")
    p.add_argument("--noise-drift", type=float, default=None,
                   help="with --noise-scale: each job of the stand-in draws its scale from a "
                        "normal distribution of this relative standard deviation (seeded by "
                        "--transpiler-seed)")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure the same circuits this many times, each in jobs of its own "
                        "(compare then tests for drift between them; default 1)")
    p.add_argument("--repeat-interval", type=float, default=0.0, metavar="SECONDS",
                   help="seconds from one repeat's start to the next's (default 0)")
    p.add_argument("--mitigate", default=None, metavar="TECHNIQUES",
                   help="readout: mthree on the counts, calibrated in the same job; trex, "
                        "zne, pea, pec (and trex,zne, trex,pea, trex,pec): the model again on "
                        "the runtime's client-side Estimator, reported beside the raw results "
                        "(pea and pec learn each layer's noise in a job first); readout, pea "
                        "and pec need the 'mitigation' extra (bash scripts/setup.sh --test) "
                        "(compare --run DIR: the technique the run must have used)")
    p.add_argument("--zne-factors", type=_floats, default=None, metavar="F1,F2,...",
                   help="run with --mitigate zne: gate-folding noise factors, each >= 1 and "
                        "increasing (default 1,3,5)")
    p.add_argument("--zne-extrapolator", type=_names, default=None, metavar="NAMES",
                   help="with --mitigate zne: extrapolators in priority order (default "
                        "exponential,linear; also linear, double_exponential, "
                        "polynomial_degree_K, fallback); compare --run DIR: refit the run's "
                        "noise-factor values with them, offline")


def _account_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("IBM Quantum account and cache")
    g.add_argument("--cache", default=None,
                   help="result cache and job ledger folder (default $QMOE_CACHE_DIR or "
                        "~/.cache/qmoe-qiskit)")
    g.add_argument("--channel", default=None,
                   help="ibm_quantum_platform or ibm_cloud (default: the saved account's)")
    g.add_argument("--instance", default=None, help="IBM Quantum instance (CRN or name)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"ablation": _ablation, "train": _train, "evaluate": _evaluate,
                    "sweep": _sweep, "run": _run, "compare": _compare, "jobs": _jobs,
                    "reproduce": _reproduce, "study": _study}
        return commands[args.command](args)
    except QMoEError as exc:
        print(f"qmoe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ("; submitted jobs are kept in the ledger (qmoe jobs list): run the same command "
                "again to fetch their results instead of resubmitting"
                if args.command in ("run", "compare") else "")
        print(f"qmoe {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


def _finish(config, args):
    """Run an experiment config, print its summary and run folder; return the folder."""
    from .experiments import run_experiment
    from .experiments.executors import make_executor

    executor = make_executor(getattr(args, "executor", "serial"),
                             address=getattr(args, "ray_address", None))
    outcome, path = run_experiment(config, args.out, overwrite=args.overwrite,
                                   progress=not args.no_progress, executor=executor)
    print(outcome.summary)
    if path is not None:
        print(f"run folder: {path} ({outcome.results['wall_seconds']:.0f} s)")
    return path


def _ablation(args) -> int:
    from .experiments.ablation import QUICK, AblationConfig

    fields = dict(QUICK) if args.quick else {}
    if args.seeds is not None:
        fields["seeds"] = seed_range(args.seeds, "the ablation")
    if args.widths is not None:
        fields["widths"] = args.widths
    fields["train"] = _train_config(args, 0, fields.get("train"))
    if args.models is not None:
        fields["models"] = args.models
    return _dry_run_or_finish(AblationConfig(data=_data_spec(args, 0), num_layers=args.layers,
                                             **fields), args)


def _reproduce(args) -> int:
    from .experiments.reproduce import QUICK, ReproduceConfig

    fields = dict(QUICK) if args.quick else {}
    if args.seeds is not None:
        fields["seeds"] = seed_range(args.seeds, "reproduce")
    return _dry_run_or_finish(ReproduceConfig(claims=args.claims, data_dir=args.data_dir,
                                              **fields), args)


def _study(args) -> int:
    from .experiments.routing import QUICK, RoutingStudy

    fields = dict(QUICK) if args.quick else {}
    if args.seeds is not None:
        fields["seeds"] = seed_range(args.seeds, "the routing study")
    fields["train"] = _train_config(args, 0, fields.get("train") or RoutingStudy.train)
    return _dry_run_or_finish(RoutingStudy(tasks=args.tasks, variants=args.variants,
                                           data_dir=args.data_dir, **fields), args)


def _train(args) -> int:
    from .experiments.train import TrainRun
    from .models import ModelSpec

    if args.calibrate_on is not None:
        return _calibrate(args)
    if args.model is not None:
        raise ConfigError("--model names the model to calibrate with --calibrate-on RUN_DIR; "
                          "qmoe train builds a new model from --router, --expert, ...")

    spec = ModelSpec(num_experts=args.experts, router=args.router, ansatz=args.ansatz,
                     num_qubits=args.qubits, num_layers=args.layers, router_hidden=args.hidden,
                     expert=args.expert, top_k=args.top_k,
                     balance_weight=args.balance_weight, capacity=args.capacity,
                     aggregation=args.aggregation)
    from .experiments.noise_from import FITTED_MODELS, NoiseFrom

    if args.mitigate is not None and args.noise_from is None:
        raise ConfigError("--mitigate names the technique the model will run with, for "
                          "--noise-from COMPARE_DIR (train under the fit without what it "
                          "removes)")
    if args.noise_model is not None and args.noise_from is None:
        raise ConfigError(f"--noise-model chooses which fit --noise-from COMPARE_DIR trains "
                          f"under (valid: {choices(FITTED_MODELS)}); give --noise-from too, or "
                          f"leave --noise-model out to train without noise")
    noise_from = None if args.noise_from is None else NoiseFrom(
        args.noise_from, args.noise_model or "best", args.mitigate)
    config = TrainRun(data=_data_spec(args, args.seed), model=spec,
                      train=_train_config(args, args.seed), noise_from=noise_from)
    print(f"model: {_finish(config, args) / 'model.pt'}")
    return 0


def _calibrate(args) -> int:
    from .experiments.calibrate import CalibrateHeads

    if args.noise_from is not None:
        raise ConfigError("--calibrate-on retrains on the hardware's own outputs; --noise-from "
                          "trains under a fitted noise model: use one or the other")
    fields = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    config = CalibrateHeads(run=args.calibrate_on, model=args.model, seed=args.seed, **fields)
    print(f"model: {_finish(config, args) / 'model.pt'}")
    return 0


def _evaluate(args) -> int:
    from .experiments.train import evaluate_saved

    scores, data, samples = evaluate_saved(args.model)
    print(f"test accuracy {scores['accuracy']:.3f}, macro F1 {scores['f1']:.3f} "
          f"({samples} held-out samples of {data.dataset})")
    return 0


def _sweep(args) -> int:
    from .experiments.sweep import SweepConfig
    from .training import TrainConfig

    config = SweepConfig(
        model=args.model, noise=args.noise_model, levels=args.levels, scales=args.scales,
        shots=args.shots, repetitions=args.repetitions, retrain=args.retrain,
        engine=args.engine,
        train=_train_config(args, args.seed, TrainConfig(**RETRAIN_DEFAULTS)),
        baseline=not args.no_baseline, seed=args.seed)
    return _dry_run_or_finish(config, args)


def _dry_run_or_finish(config, args) -> int:
    """A study's ``--dry-run`` (its cells and how long they would take) or the study itself."""
    if args.dry_run:
        from .experiments.base import estimate_experiment

        print(f"qmoe {args.command} --dry-run: {estimate_experiment(config)}; nothing was run "
              f"or written")
        return 0
    _finish(config, args)
    return 0


def _run_config(args, dry_run: bool = False):
    from .experiments.run import RunConfig

    return RunConfig(model=args.model, backend=args.backend, shots=args.shots,
                     samples=args.limit, optimization_level=args.optimization_level,
                     seed=args.transpiler_seed, layout=args.layout, twirling=args.twirling,
                     dynamical_decoupling=args.dd, cache_dir=args.cache,
                     channel=args.channel, instance=args.instance, dry_run=dry_run,
                     noise_scale=args.noise_scale, mitigate=args.mitigate,
                     zne_factors=args.zne_factors, zne_extrapolator=args.zne_extrapolator,
                     readout_scale=args.readout_scale, noise_drift=args.noise_drift,
                     repeats=args.repeats, repeat_interval=args.repeat_interval,
                     split=args.split)


def _run(args) -> int:
    _finish(_run_config(args, args.dry_run), args)
    return 0


def _compare(args) -> int:
    from .experiments.compare import CompareConfig

    if args.tolerance is not None:
        raise ConfigError("--tolerance is gone: a model now explains the hardware when a "
                          "goodness-of-fit test at level --alpha (default 0.01) does not reject "
                          "it; the TVD over the shot-noise floor is still reported")
    analysis = dict(alpha=args.alpha, models=args.models, idle_noise=args.idle_noise)
    if args.run is not None:
        given = [flag for flag, value in (("--model", args.model), ("--backend", args.backend),
                                          ("--noise-scale", args.noise_scale),
                                          ("--readout-scale", args.readout_scale),
                                          ("--noise-drift", args.noise_drift)) if value is not None]
        if args.quick:
            given.append("--quick")
        if args.repeats != 1:
            given.append("--repeats")
        if args.zne_factors is not None:
            given.append("--zne-factors")
        if given:
            raise ConfigError(f"--run compares a finished run; {given[0]} is for running a model "
                              f"first (give --model and --backend without --run)")
        config = CompareConfig(run=args.run, mitigate=args.mitigate,
                               zne_extrapolator=args.zne_extrapolator, **analysis)
    elif args.model is None or args.backend is None:
        raise ConfigError("give a finished run folder (--run DIR), or a model and a backend to "
                          "run it on first (--model M --backend B)")
    else:
        if args.quick and args.limit is None:
            args.limit = QUICK_COMPARE_SAMPLES
        config = CompareConfig(backend_run=_run_config(args), **analysis)
    _finish(config, args)
    return 0


def _jobs(args) -> int:
    from .jobs.ledger import Ledger, default_cache_dir
    from .jobs.manage import fetch_results, job_table, per_job, refresh_status, select

    if args.action is None:
        raise ConfigError("give an action: list, status or fetch (then job ids, default: every "
                          "recorded job)")
    root = Path(args.cache) if args.cache else default_cache_dir()
    ledger = Ledger(root / "ledger.jsonl")
    entries = select(ledger, args.job_ids)
    if args.action == "list":
        print(job_table(entries))
        return 0
    from .jobs.cache import ResultCache
    from .jobs.service import runtime_service

    service = lambda: runtime_service(channel=args.channel, instance=args.instance)  # noqa: E731
    if args.action == "status":
        rows = refresh_status(ledger, entries, service)
    else:
        rows = fetch_results(ledger, ResultCache(root), entries, service)
    for line in per_job(rows):
        print(line)
    if not rows:
        print("no jobs recorded")
    unavailable = {entry.job_id for entry, state in rows if state.startswith("unavailable")}
    if unavailable:
        print(f"qmoe jobs: error: {len(unavailable)} job(s) could not be reached on IBM Quantum "
              f"(see above); their ledger entries are kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
