"""The ``attrpipe`` command line. Each command is a thin wrapper over a library function."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML config (conf/tiny_cpu.yaml, conf/paper.yaml, ...), merged over base.yaml")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. consensus.threshold=0.7; before or after "
                   "the options")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="the full logs of Ray, the trainers and the libraries on the terminal (by default they go to "
                        "a log file in the output directory, and the terminal shows one line per stage)")


def _add_since_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="PREVIOUS_OUTPUT",
                   help="an earlier output of this command on an earlier catalog: listings whose images, vertical "
                   "and questions are unchanged are carried over from it, the rest labeled (docs/pseudolabel.md)")
    p.add_argument("--relabel-all", action="store_true",
                   help="with --since: accept a previous output labeled differently (another adapter, other "
                   "settings) and relabel every listing; the counts still say what changed")


def _quiet(args, out_dir: str | None):
    """The command's terminal session (attrpipe.console): logs to ``<out_dir>/attrpipe-<command>.log`` unless -v."""
    from attrpipe.console import command_session

    return command_session(out_dir, _command(args), verbose=getattr(args, "verbose", False),
                           shutdown_ray=getattr(args, "cli_process", False))


def _run_dir(cfg, *sub: str) -> str:
    from attrpipe import storage

    return storage.join(str(cfg.run.output_dir), str(cfg.run.name), *sub)


def _is_override(token: str) -> bool:
    return "=" in token and not token.startswith("-")


def _command(args) -> str:
    """The command with its kind (``study threshold``, ``train sft``), as attrpipe.preflight.SET_BY_COMMAND names it."""
    return f"{args.command} {args.kind}" if getattr(args, "kind", None) else args.command


def _load(args):
    """The configuration, with the overrides the command would ignore refused (attrpipe.preflight)."""
    from attrpipe.config import load_config
    from attrpipe.preflight import refuse_overrides

    cfg = load_config(args.config, args.overrides)
    refuse_overrides(_command(args), args.overrides)
    return cfg


def cmd_config(args) -> int:
    from attrpipe.config import config_hash, to_yaml

    cfg = _load(args)
    sys.stdout.write(to_yaml(cfg))
    print(f"# config hash: {config_hash(cfg)}")
    return 0


def cmd_synth_pretrain(args) -> int:
    from attrpipe.synth.pretrain import run_pretrain

    cfg = _load(args)
    with _quiet(args, str(cfg.pretrain.output)):
        record = run_pretrain(cfg, force=args.force)
    if args.export:
        from attrpipe.synth.pretrain import export_model

        card = export_model(record, args.export)
        print(f"exported {args.export}: {len(card['sha256'])} files, model.safetensors sha256 "
              f"{card['sha256']['model.safetensors'][:16]}...")
    return 0


def cmd_synth_catalog(args) -> int:
    from attrpipe.synth.catalog import write_synthetic_catalog
    from attrpipe.taxonomy import load_taxonomy

    tax = load_taxonomy(args.taxonomy, args.verticals or None)
    t0 = time.perf_counter()
    summary = write_synthetic_catalog(
        args.out,
        taxonomy=tax,
        listings=args.listings,
        seed=args.seed,
        seed_per_vertical=args.seed_per_vertical,
        test_per_vertical=args.test_per_vertical,
        max_views=args.max_views,
        difficulty=args.difficulty,
        label_noise=args.label_noise,
        teacher=args.teacher,
        min_views=args.min_views,
        view_noise=args.view_noise,
    )
    print(json.dumps(summary.get("counts", summary), indent=2, sort_keys=True))
    print(f"wrote synthetic catalog to {args.out} in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_model_tiny(args) -> int:
    from attrpipe.models.tiny import build_tiny_model

    t0 = time.perf_counter()
    path = build_tiny_model(args.out, seed=args.seed, force=args.force)
    print(f"tiny Qwen2.5-VL at {path} ({time.perf_counter() - t0:.1f}s)")
    return 0


def _adapter(args, key: str, value):
    """The adapter a command samples with, and where it came from: ``--adapter``, else the config key's value."""
    return (args.adapter, "--adapter") if args.adapter is not None else (value, key)


def _catalog_inputs(args, adapter_key: str):
    """A command that samples over a catalog (pseudolabel, predict): its config, the catalog (``--catalog``, else
    data.unlabeled) and the adapter (``--adapter``, else ``adapter_key``), checked before anything runs."""
    from omegaconf import OmegaConf

    from attrpipe.preflight import check_generation

    cfg = _load(args)
    catalog = args.catalog or cfg.data.unlabeled
    adapter, adapter_source = _adapter(args, adapter_key, OmegaConf.select(cfg, adapter_key))
    check_generation(cfg, data=catalog, data_source="--catalog" if args.catalog else "data.unlabeled", labeled=False,
                     adapter=adapter, adapter_source=adapter_source)
    return cfg, catalog, adapter


def cmd_pseudolabel(args) -> int:
    from attrpipe.pseudolabel.pipeline import output_dir_for, run_pseudolabel

    cfg, catalog, adapter = _catalog_inputs(args, "pseudolabel.adapter")
    out = args.out or output_dir_for(cfg)
    # data.unlabeled_limit: the first N listings of the catalog labeled (the pool, or --catalog's)
    with _quiet(args, out):
        run_pseudolabel(cfg, catalog=catalog, out=out, adapter=adapter, limit=cfg.data.unlabeled_limit,
                        since=args.since, relabel_all=args.relabel_all)
    return 0


def cmd_evaluate(args) -> int:
    from attrpipe.evaluation import run_evaluate
    from attrpipe.preflight import check_generation

    cfg = _load(args)
    test = args.test or cfg.data.test
    # without --adapter the pipeline samples with pseudolabel.adapter (null by default: the model alone)
    adapter, adapter_source = _adapter(args, "pseudolabel.adapter", cfg.pseudolabel.adapter)
    check_generation(cfg, data=test, data_source="--test" if args.test else "data.test", labeled=True,
                     adapter=adapter, adapter_source=adapter_source)
    out = args.out or _run_dir(cfg, "eval")
    with _quiet(args, out):
        run_evaluate(cfg, test=test, adapter=args.adapter, out=out, mode=args.mode)
    return 0


def cmd_train(args) -> int:
    from attrpipe.preflight import check_training
    from attrpipe.train import run_training
    from attrpipe.console import echo
    from attrpipe.train.plan import default_paths

    cfg = _load(args)
    source = "--data" if args.data else ("data.seed" if args.kind == "sft" else f"{args.kind} data (no --data: the "
                                         "default)")
    check_training(args.kind, cfg, data=args.data or default_paths(args.kind, cfg)["data"], data_source=source,
                   init_adapter=args.init_adapter, reference_adapter=args.reference_adapter, resume=args.resume)
    with _quiet(args, args.out or default_paths(args.kind, cfg)["out_dir"]):
        out = run_training(args.kind, cfg, out_dir=args.out, data=args.data, init_adapter=args.init_adapter,
                           resume_from=args.resume, reference_adapter=args.reference_adapter)
        echo(f"{args.kind}: {out['global_step']} steps on {out['records']} records in {out['wall_seconds']:.0f}s "
             f"(train loss {out['train_loss']:.4f})")
        echo(f"adapter: {out['adapter']}\nmetrics: {out['metrics']}")
    return 0


def cmd_loop(args) -> int:
    from attrpipe.loop import run_loop
    from attrpipe.preflight import check_loop

    cfg = _load(args)
    check_loop(cfg)
    with _quiet(args, _run_dir(cfg)):
        run_loop(cfg)
    return 0


def cmd_study(args) -> int:
    from attrpipe.preflight import check_study
    from attrpipe.study import run_study

    cfg = _load(args)
    check_study(cfg)
    with _quiet(args, _run_dir(cfg)):
        out = run_study(cfg, args.kind, command=["attrpipe", *args.argv])
    return 1 if out["failed"] else 0  # every arm that finished is in the summary; a rerun redoes the failed ones


def cmd_results_tables(args) -> int:
    from attrpipe.results import load_summary
    from attrpipe.results_tables import fill_markers, render_tables, tables_markdown

    summary = load_summary(args.summary)
    if summary is None:
        print(f"attrpipe: error: no summary at {args.summary} (a study command writes it: study.summary)",
              file=sys.stderr)
        return 2
    if args.into:
        path = Path(args.into)
        path.write_text(fill_markers(path.read_text(), render_tables(summary)))
        print(f"tables written into the marked blocks of {path}")
    else:
        sys.stdout.write(tables_markdown(summary))
    return 0


def cmd_results_plot(args) -> int:
    from attrpipe.report import plot_study
    from attrpipe.results import load_summary, study_for_plot

    summary = load_summary(args.summary)
    if summary is None:
        print(f"attrpipe: error: no summary at {args.summary}", file=sys.stderr)
        return 2
    try:
        study = study_for_plot(summary, args.study)
    except KeyError as e:
        print(f"attrpipe: error: {e.args[0]}", file=sys.stderr)
        return 2
    plot_study(study, args.out)
    print(f"plot of {args.study} ({len(study['seeds'])} seed(s)) written to {args.out}")
    return 0


def cmd_results_add(args) -> int:
    from attrpipe.results import add_run

    try:
        add_run(args.summary, args.run, args.label)
    except FileNotFoundError as e:
        print(f"attrpipe: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.run} recorded as {args.label!r} in {args.summary}")
    return 0


def cmd_results_premise(args) -> int:
    from attrpipe.catalog_io import CatalogReading
    from attrpipe.premise import chain_premise, premise_text, read_chain_rows, read_truth

    cfg = _load(args)
    truth = read_truth(cfg.data.truth, CatalogReading.from_conf(cfg))
    if truth is None:
        print(f"attrpipe: error: data.truth: no truth file at {cfg.data.truth} (the pool's true labels)",
              file=sys.stderr)
        return 2
    rows = read_chain_rows(args.chains)
    if not rows:
        print(f"attrpipe: error: {args.chains}: no consensus shards (a pseudo-labeling output directory)",
              file=sys.stderr)
        return 2
    premise = chain_premise(rows, truth, float(cfg.consensus.threshold))
    if args.json:
        print(json.dumps(premise, indent=2, sort_keys=True))
    else:
        print(f"{args.chains}: {len(rows):,} listing-attributes against {cfg.data.truth}")
        print(premise_text(premise))
    return 0


def cmd_report(args) -> int:
    from attrpipe.report import write_report

    index = write_report(args.run_dirs, out=args.out)
    print(f"report: {index}")
    return 0


def cmd_predict(args) -> int:
    from attrpipe.predict import run_predict

    cfg, catalog, adapter = _catalog_inputs(args, "predict.adapter")
    # data.unlabeled_limit: the first N listings of the catalog (a trial), as pseudo-labeling takes it
    out = args.out or cfg.predict.output or _run_dir(cfg, "predict")
    with _quiet(args, out):
        run_predict(cfg, catalog=catalog, adapter=adapter, out=out, mode=args.mode, limit=cfg.data.unlabeled_limit,
                    since=args.since, relabel_all=args.relabel_all)
    return 0


def cmd_catalog_check(args) -> int:
    from attrpipe.catalog_check import run_catalog_check

    return 0 if run_catalog_check(_load(args), args.path, out=args.out)["ok"] else 1


def cmd_audit(args) -> int:
    from attrpipe.audit import audit, format_report

    rep = audit(args.run_dir)
    print(format_report(rep))
    return 0 if rep.ok else 1


def cmd_demo(args) -> int:
    from attrpipe.demo import run_demo

    cfg = _load(args)
    with _quiet(args, _run_dir(cfg)):
        code = run_demo(cfg)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attrpipe",
        description="Teach compact vision-language models product attributes from few labels and many unlabeled "
        "listings: seed SFT, 7-chain consensus pseudo-labels, DPO.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("config", help="print the resolved, validated config and its hash")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("demo", help="the CPU demo: tiny model, synthetic catalog, the whole loop and its report")
    _add_config_args(p)
    p.set_defaults(func=cmd_demo)

    from attrpipe.config import SYNTHETIC_TEACHERS, load_config

    syn = load_config().synthetic  # one place for the defaults: conf/base.yaml
    p = sub.add_parser("pseudolabel", help="7-chain consensus pseudo-labels and DPO pairs (Ray Data)")
    _add_config_args(p)
    p.add_argument("--catalog", help="catalog to label (default: data.unlabeled); data.unlabeled_limit applies to it")
    p.add_argument("--out", help="output directory or URI (default: pseudolabel.output or the run directory)")
    p.add_argument("--adapter", help="LoRA adapter to sample with (default: pseudolabel.adapter)")
    _add_since_args(p)
    p.set_defaults(func=cmd_pseudolabel)

    p = sub.add_parser("train", help="train the LoRA adapter on Ray Train: seed SFT, DPO, ScPO or self-learning (SL)")
    p.add_argument("kind", choices=["sft", "dpo", "scpo", "sl"], help="sft: labeled seed set; dpo: pairs/ shards; "
                   "scpo: one vote-weighted pair per kept example of consensus/ shards; sl: preferred chains of "
                   "consensus/ shards")
    _add_config_args(p)
    p.add_argument("--data", help="training data: Parquet file or directory (default: data.seed for sft, "
                   "<run>/pairs for dpo, <run>/consensus for scpo and sl)")
    p.add_argument("--out", help="output directory (default: <run.output_dir>/<run.name>/<kind>)")
    p.add_argument("--init-adapter", help="adapter to continue (dpo/scpo/sl default: <run>/sft/adapter, unless "
                   "dpo.reference=base / sl.init=base)")
    p.add_argument("--reference-adapter", help="dpo, scpo: frozen reference adapter other than the start adapter")
    p.add_argument("--resume", help="checkpoint, or a directory above checkpoints (e.g. a previous --out), to "
                   "continue from")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("loop", help="seed SFT, then rounds of pseudo-label -> DPO/SL -> evaluate (resumable)")
    _add_config_args(p)
    p.set_defaults(func=cmd_loop)

    p = sub.add_parser("study", help="the paper's tables: a threshold or pool-size sweep, DPO and SL side by side "
                       "(and the oracle arms, diagnostic ceilings, when study.methods names them); merges its arms "
                       "into study.summary")
    p.add_argument("kind", choices=["threshold", "pool-size"], help="threshold: study.thresholds; pool-size: "
                   "study.pool_sizes (the first N listings of the pool)")
    _add_config_args(p)
    p.set_defaults(func=cmd_study)

    results = sub.add_parser("results", help="the summary.json the study commands write, and its Markdown tables")
    results_sub = results.add_subparsers(dest="results_command", metavar="WHAT", required=True)
    p = results_sub.add_parser("tables", help="the Markdown tables of a summary.json (Table 4/5/6 shapes, the premise)")
    p.add_argument("summary", metavar="SUMMARY", help="a summary.json (study.summary; default <run dir>/summary.json)")
    p.add_argument("--into", metavar="FILE", help="replace the <!-- results:NAME --> ... <!-- /results:NAME --> "
                   "blocks of this Markdown file instead of printing")
    p.set_defaults(func=cmd_results_tables)
    p = results_sub.add_parser("plot", help="a study's plot (accuracy against its variable, DPO and SL, mean and "
                               "standard deviation over seeds) drawn from a summary.json")
    p.add_argument("summary", metavar="SUMMARY")
    p.add_argument("study", metavar="STUDY", help="the study's key in the summary, e.g. miniature/study-pool-size")
    p.add_argument("--out", required=True, metavar="PNG")
    p.set_defaults(func=cmd_results_plot)
    p = results_sub.add_parser("add", help="record a run that is not a study in a summary.json: an evaluation "
                               "(metrics.json; --label zero-shot is Table 4's first row) or a loop run")
    p.add_argument("summary", metavar="SUMMARY")
    p.add_argument("run", metavar="DIR", help="an evaluation output directory or a loop run directory")
    p.add_argument("--label", required=True, help="its name in the summary, e.g. zero-shot")
    p.set_defaults(func=cmd_results_add)
    p = results_sub.add_parser("premise", help="the premise of a set of chains (a pseudo-labeling output) against the "
                               "pool's true labels (data.truth): a chain's accuracy, the kept consensus's, the gain "
                               "split into keeping and the vote, the pairs by what they teach (attrpipe/premise.py)")
    _add_config_args(p)
    p.add_argument("--chains", required=True, metavar="DIR", help="a pseudo-labeling output directory (its consensus/)")
    p.add_argument("--json", action="store_true", help="the whole measurement, per attribute too, as JSON (fractions)")
    p.set_defaults(func=cmd_results_premise)

    p = sub.add_parser("report", help="static HTML report with PNG plots of loop runs and studies")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (<run.output_dir>/<run.name>); "
                   "several: their loops side by side")
    p.add_argument("--out", help="report directory (default: <first RUN_DIR>/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="predict every inferable attribute of a catalog; low-confidence rows to review")
    _add_config_args(p)
    p.add_argument("--catalog", help="catalog to predict (default: data.unlabeled); data.unlabeled_limit applies "
                   "to it")
    p.add_argument("--adapter", help="trained LoRA adapter (default: predict.adapter)")
    p.add_argument("--out", help="output directory or URI (default: predict.output or <run>/predict)")
    p.add_argument("--mode", choices=["greedy", "self_consistency"], help="default: predict.mode")
    _add_since_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="greedy decoding (or the vote of the sampled chains) of a labeled test set; "
                       "accuracy as JSON")
    _add_config_args(p)
    p.add_argument("--test", help="labeled test set (default: data.test)")
    p.add_argument("--adapter", help="LoRA adapter to evaluate (default: pseudolabel.adapter, null: the model "
                   "without adapter)")
    p.add_argument("--out", help="output directory (default: <run.output_dir>/<run.name>/eval)")
    p.add_argument("--mode", choices=["greedy", "vote"], default="greedy",
                   help="greedy: one greedy chain per listing-attribute (default); vote: the consensus of "
                   "generation.num_chains chains sampled at generation.temperature, scored the same way")
    p.set_defaults(func=cmd_evaluate)

    catalog = sub.add_parser("catalog", help="catalog utilities")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", metavar="WHAT", required=True)
    p = catalog_sub.add_parser("check", help="what pseudo-labeling would make of a catalog, without a model: rows "
                               "it would label and quarantine (by reason), images by format and size; exit 1 when "
                               "nothing would be labeled or the schema is unusable")
    p.add_argument("path", metavar="PATH", help="the catalog (a Parquet file or directory, local or URI)")
    _add_config_args(p)
    p.add_argument("--out", help="the JSON report (default: <run.output_dir>/<run.name>/catalog_check.json)")
    p.set_defaults(func=cmd_catalog_check)

    p = sub.add_parser("audit", help="check a run from its manifests and shards: every input row accounted for "
                       "once, pairs by the rules, adapters whole")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a loop run (<run.output_dir>/<run.name>), a study directory, "
                   "or a pseudo-labeling / evaluation / prediction output (local path or URI)")
    p.set_defaults(func=cmd_audit)

    from attrpipe.plan import add_plan_parser

    add_plan_parser(sub)

    from attrpipe.gpu_check import add_gpu_check_parser

    add_gpu_check_parser(sub)

    synth = sub.add_parser("synth", help="synthetic data with known ground truth")
    synth_sub = synth.add_subparsers(dest="synth_command", metavar="WHAT", required=True)
    p = synth_sub.add_parser("catalog", help="render a synthetic catalog: seed, unlabeled and test splits")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--listings", type=int, required=True, help="listings in the unlabeled pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-per-vertical", type=int, default=syn.seed_per_vertical, help="labeled seed listings per vertical")
    p.add_argument("--test-per-vertical", type=int, default=syn.test_per_vertical, help="labeled test listings per vertical")
    p.add_argument("--max-views", type=int, default=syn.max_views, help="at most this many images per listing")
    p.add_argument("--difficulty", type=float, default=syn.difficulty, help="0 = clean centred product, 1 = heavy nuisances")
    p.add_argument("--label-noise", type=float, default=syn.label_noise, help="fraction of seed labels made wrong")
    p.add_argument("--min-views", type=int, default=syn.min_views, help="at least this many images per listing")
    p.add_argument("--view-noise", type=float, default=syn.view_noise,
                   help="chance that a view shows an attribute otherwise (another of its values)")
    p.add_argument("--teacher", choices=SYNTHETIC_TEACHERS, default=syn.teacher,
                   help="the seed reasoning: explained (the visual evidence, then the answer in one of the teacher's "
                        "phrasings), evidence (the evidence alone: a diagnostic, docs/results.md), views (the "
                        "evidence of one view that shows the label, named: 'In picture 2 ...') or descriptors (as "
                        "explained, but a colour is named by one of its shades, 'the strap is cobalt', then Blue, "
                        "and a print by one of its motifs)")
    p.add_argument("--taxonomy", default="conf/taxonomy", help="taxonomy directory")
    p.add_argument("--verticals", nargs="*", help="only these verticals")
    p.set_defaults(func=cmd_synth_catalog)
    p = synth_sub.add_parser("pretrain", help="pretrain a small Qwen2.5-VL from scratch on generic visual questions "
                                              "(pretrain.*; cached in pretrain.output)")
    _add_config_args(p)
    p.add_argument("--force", action="store_true", help="retrain even if the cached model matches the recipe")
    p.add_argument("--export", metavar="DIR", help="also copy the model to DIR with its model card (recipe, hash, "
                                                   "parameters, sha256 of every file, timings): a shipped model")
    p.set_defaults(func=cmd_synth_pretrain)

    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", metavar="WHAT", required=True)
    p = model_sub.add_parser("tiny", help="build the tiny random-weight Qwen2.5-VL (cached) as a normal HF directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if the cache matches")
    p.set_defaults(func=cmd_model_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    from attrpipe.config import ConfigError
    from attrpipe.models.loader import ModelChecksumError
    from attrpipe.results import SummaryModelMismatch
    from attrpipe.preflight import InputError
    from attrpipe.taxonomy import TaxonomyError

    cli_process = argv is None  # the `attrpipe` process itself (not a call from Python): it owns its Ray
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides after the options (argparse takes only those before them as the positional): in order,
    # after the ones before, so the last of a key wins as on any command line
    if extra and hasattr(args, "overrides") and all(_is_override(t) for t in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv
    args.cli_process = cli_process
    try:
        return int(args.func(args) or 0)
    except (ConfigError, TaxonomyError, ModelChecksumError, InputError, SummaryModelMismatch) as e:
        print(f"attrpipe: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
