"""Capacity planning: tokens, GPU-hours and wall time of one round (pseudo-labeling, DPO, evaluation).

Pure arithmetic on declared figures; nothing is measured here. Throughputs are per GPU and are the user's to give
(``attrpipe gpu-check`` measures them on the target GPUs, attrpipe/gpu_check.py, and prints them as an ``attrpipe
plan`` line). Every figure used is printed with the table, so the estimate can be checked.

Model of one round:

- pseudo-labeling: ``requests = listings x attributes``; each request samples ``chains`` chains of
  ``tokens_per_chain`` generated tokens; its prompt (text + image tokens) is prefilled once per request (vLLM
  shares it across the n chains of a request);
- DPO: ``pairs = requests x keep_rate x pairs_per_kept``; each pair puts its prompt and both chains through the
  policy (forward + backward) and the frozen reference (forward): ``train_tokens_per_s`` is per GPU for that whole
  step, counted over ``2 x (prompt + tokens_per_chain)`` tokens per pair per epoch;
- evaluation: ``eval_listings x attributes`` greedy requests of ``eval_tokens`` generated tokens each.

Wall time = GPU-seconds / (gpus x efficiency) + startup (model loading, Ray start), per stage.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["plan_round", "format_plan", "image_tokens", "asked_per_listing", "add_plan_parser", "cmd_plan"]


def image_tokens(size: int, patch: int = 14, merge: int = 2) -> int:
    """Qwen2.5-VL tokens of one ``size x size`` image: (size / (patch x merge))^2 (224 -> 64)."""
    side = math.ceil(size / (patch * merge))
    return side * side


def _stage(requests: float, prompt_tokens: float, generated: float, gpu_seconds: float, gpus: int,
           efficiency: float, startup_s: float) -> dict:
    return {
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated,
        "gpu_hours": gpu_seconds / 3600.0,
        "wall_hours": (gpu_seconds / (gpus * efficiency) + startup_s) / 3600.0,
    }


def plan_round(
    *,
    listings: int,
    attributes_per_listing: float,
    chains: int,
    tokens_per_chain: float,
    prompt_tokens: float,
    gpus: int,
    tokens_per_s: float,
    prefill_tokens_per_s: float | None = None,
    keep_rate: float = 0.6,
    pairs_per_kept: float = 2.0,
    dpo_epochs: int = 1,
    train_tokens_per_s: float | None = None,
    eval_listings: int = 0,
    eval_tokens: float = 200,
    efficiency: float = 1.0,
    startup_s: float = 0.0,
    rounds: int = 1,
) -> dict[str, Any]:
    """Estimate one round (and ``rounds`` of them). Throughputs are per GPU; ``None`` leaves that cost out.

    Returns ``{"assumptions": {...}, "stages": {"pseudolabel": {...}, "dpo": {...}, "evaluation": {...}},
    "round": {...}, "total": {...}}``; each stage has requests, prompt_tokens, generated_tokens (DPO: tokens
    trained on), gpu_hours and wall_hours (None where the throughput was not given).
    """
    checks = {"listings": listings >= 0, "attributes_per_listing": attributes_per_listing > 0, "chains": chains >= 1,
              "tokens_per_chain": tokens_per_chain > 0, "prompt_tokens": prompt_tokens >= 0, "gpus": gpus >= 1,
              "tokens_per_s": tokens_per_s > 0, "keep_rate": 0 <= keep_rate <= 1, "pairs_per_kept": pairs_per_kept >= 0,
              "dpo_epochs": dpo_epochs >= 1, "eval_listings": eval_listings >= 0, "eval_tokens": eval_tokens > 0,
              "efficiency": 0 < efficiency <= 1, "startup_s": startup_s >= 0, "rounds": rounds >= 1,
              "prefill_tokens_per_s": prefill_tokens_per_s is None or prefill_tokens_per_s > 0,
              "train_tokens_per_s": train_tokens_per_s is None or train_tokens_per_s > 0}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"{bad[0]}: out of range")

    def gen_seconds(prompt: float, generated: float) -> float:
        s = generated / tokens_per_s
        if prefill_tokens_per_s:
            s += prompt / prefill_tokens_per_s
        return s

    requests = listings * attributes_per_listing
    pl_prompt = requests * prompt_tokens
    pl_generated = requests * chains * tokens_per_chain
    pseudolabel = _stage(requests, pl_prompt, pl_generated, gen_seconds(pl_prompt, pl_generated), gpus, efficiency,
                         startup_s)
    pseudolabel["chains"] = requests * chains

    kept = requests * keep_rate
    pairs = kept * pairs_per_kept
    dpo_tokens = pairs * dpo_epochs * 2 * (prompt_tokens + tokens_per_chain)
    if train_tokens_per_s:
        dpo = _stage(pairs, pairs * prompt_tokens, dpo_tokens, dpo_tokens / train_tokens_per_s, gpus, efficiency,
                     startup_s)
    else:
        dpo = {"requests": pairs, "prompt_tokens": pairs * prompt_tokens, "generated_tokens": dpo_tokens,
               "gpu_hours": None, "wall_hours": None}
    dpo["kept_examples"] = kept

    ev_requests = eval_listings * attributes_per_listing
    ev_prompt, ev_generated = ev_requests * prompt_tokens, ev_requests * eval_tokens
    evaluation = (_stage(ev_requests, ev_prompt, ev_generated, gen_seconds(ev_prompt, ev_generated), gpus,
                         efficiency, startup_s) if ev_requests else
                  {"requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "gpu_hours": 0.0, "wall_hours": 0.0})

    stages = {"pseudolabel": pseudolabel, "dpo": dpo, "evaluation": evaluation}

    def total(key: str, times: int) -> float | None:
        values = [s[key] for s in stages.values()]
        return None if any(v is None for v in values) else sum(values) * times

    per_round = {k: total(k, 1) for k in ("prompt_tokens", "generated_tokens", "gpu_hours", "wall_hours")}
    all_rounds = {k: total(k, rounds) for k in per_round}
    assumptions = {
        "listings": listings, "attributes_per_listing": attributes_per_listing, "chains": chains,
        "tokens_per_chain": tokens_per_chain, "prompt_tokens": prompt_tokens, "gpus": gpus,
        "tokens_per_s": tokens_per_s, "prefill_tokens_per_s": prefill_tokens_per_s, "keep_rate": keep_rate,
        "pairs_per_kept": pairs_per_kept, "dpo_epochs": dpo_epochs, "train_tokens_per_s": train_tokens_per_s,
        "eval_listings": eval_listings, "eval_tokens": eval_tokens, "efficiency": efficiency,
        "startup_s": startup_s, "rounds": rounds,
    }
    return {"assumptions": assumptions, "stages": stages, "round": per_round, "total": all_rounds}


def _num(x: float | None) -> str:
    if x is None:
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}"


def _hours(h: float | None) -> str:
    if h is None:
        return "n/a"
    minutes = round(h * 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_plan(plan: dict) -> str:
    """A Markdown table of the stages, the round (and all rounds), then every assumption it rests on."""
    a = plan["assumptions"]
    rows = [("stage", "requests / pairs", "prompt tokens", "generated / trained tokens", "GPU-hours", "wall")]
    names = {"pseudolabel": "pseudo-labeling", "dpo": "DPO", "evaluation": "evaluation"}
    for key, s in plan["stages"].items():
        rows.append((names[key], _num(s["requests"]), _num(s["prompt_tokens"]), _num(s["generated_tokens"]),
                     "n/a" if s["gpu_hours"] is None else f"{s['gpu_hours']:.2f}", _hours(s["wall_hours"])))
    r = plan["round"]
    rows.append(("round", "", _num(r["prompt_tokens"]), _num(r["generated_tokens"]),
                 "n/a" if r["gpu_hours"] is None else f"{r['gpu_hours']:.2f}", _hours(r["wall_hours"])))
    if a["rounds"] > 1:
        t = plan["total"]
        rows.append((f"{a['rounds']} rounds", "", _num(t["prompt_tokens"]), _num(t["generated_tokens"]),
                     "n/a" if t["gpu_hours"] is None else f"{t['gpu_hours']:.2f}", _hours(t["wall_hours"])))
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    pl = plan["stages"]["pseudolabel"]
    prefill = (f"{_num(a['prefill_tokens_per_s'])} prompt tokens/s per GPU" if a["prefill_tokens_per_s"]
               else "not counted (no --prefill-tokens-per-s)")
    train = (f"{_num(a['train_tokens_per_s'])} tokens/s per GPU (policy fwd+bwd and reference fwd)"
             if a["train_tokens_per_s"] else "not given: DPO time is n/a")
    lines += [
        "",
        "assumptions:",
        f"  {a['listings']:,} listings x {a['attributes_per_listing']:g} attributes = {_num(pl['requests'])} "
        f"requests; {a['chains']} chains each = {_num(pl['chains'])} chains",
        f"  {a['tokens_per_chain']:g} generated tokens per chain (mean, not the cap); "
        f"{a['prompt_tokens']:g} prompt tokens per request (text + image tokens), prefilled once per request",
        f"  generation: {_num(a['tokens_per_s'])} generated tokens/s per GPU; prefill: {prefill}",
        f"  DPO: keep rate {a['keep_rate']:g}, {a['pairs_per_kept']:g} pairs per kept example, "
        f"{a['dpo_epochs']} epoch(s), 2 x (prompt + chain) tokens per pair; {train}",
        f"  evaluation: {a['eval_listings']:,} listings, greedy, {a['eval_tokens']:g} generated tokens per answer",
        f"  {a['gpus']} GPUs at {a['efficiency']:.0%} efficiency; {a['startup_s']:g} s start-up per stage; "
        "wall = GPU-seconds / (GPUs x efficiency) + start-up",
    ]
    return "\n".join(lines)


# --- command line (wired into attrpipe/cli.py as `attrpipe plan`) -----------------------------------------------


def add_plan_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``attrpipe plan CONFIG [overrides] --listings N --tokens-per-s X ...``; chains, the tokens cap, image
    size, DPO epochs, evaluation tokens and the GPU count default to the configuration's values."""
    p = subparsers.add_parser("plan", help="estimate tokens, GPU-hours and wall time of a round, or of a study "
                              "(--study) on clusters of --gpus GPUs")
    p.add_argument("config", help="a YAML config (conf/paper.yaml, ...), merged over base.yaml")
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. generation.num_chains=9")
    p.add_argument("--listings", type=int, help="unlabeled listings pseudo-labeled per round (a threshold study: "
                   "its pool; a pool-size study's pools are study.pool_sizes)")
    p.add_argument("--study", choices=["threshold", "pool-size"],
                   help="plan the whole study of the configuration (study.*): its shared seed SFT and chains, its arms "
                   "side by side, GPU-hours per stage and the wall time on each --gpus cluster")
    p.add_argument("--seed-listings", type=int, default=0,
                   help="--study: labeled listings of the seed SFT (its training set, and the fit's)")
    p.add_argument("--attributes-per-listing", type=float,
                   help="asked attributes per listing (default: the mean over the configured verticals of the "
                   "attributes pseudo-labeling asks, from the taxonomy)")
    p.add_argument("--tokens-per-s", type=float, required=True,
                   help="generated tokens/s per GPU with vLLM batching (measured or declared)")
    p.add_argument("--train-tokens-per-s", type=float, help="DPO tokens/s per GPU (policy + reference); "
                   "required with --study")
    p.add_argument("--prefill-tokens-per-s", type=float, help="prompt tokens/s per GPU (default: not counted)")
    p.add_argument("--gpus", type=int, nargs="+", help="GPUs (default: ray.engine.num_actors x "
                   "tensor_parallel_size); --study: the cluster's GPUs, one or more sizes to plan on")
    p.add_argument("--chains", type=int, help="chains per request (default: generation.num_chains)")
    p.add_argument("--tokens-per-chain", type=float,
                   help="mean generated tokens per chain (default: generation.max_new_tokens, an upper bound)")
    p.add_argument("--images-per-listing", type=float, default=3.0, help="images per listing (default 3)")
    p.add_argument("--prompt-text-tokens", type=float, default=150.0,
                   help="text tokens of a prompt: template + attribute + options (default 150)")
    p.add_argument("--keep-rate", type=float, default=0.6, help="share of examples with C >= threshold (0.6)")
    p.add_argument("--pairs-per-kept", type=float, default=2.0, help="DPO pairs per kept example (2)")
    p.add_argument("--eval-listings", type=int, default=0, help="listings in the evaluation set")
    p.add_argument("--efficiency", type=float, default=1.0, help="share of ideal scaling reached (1.0: ideal)")
    p.add_argument("--startup-s", type=float, default=0.0, help="seconds of start-up per stage (model loading)")
    p.add_argument("--rounds", type=int, default=1, help="rounds of pseudo-labeling + DPO")
    p.set_defaults(func=cmd_plan)
    return p


def asked_per_listing(cfg) -> float:
    """Mean number of attributes pseudo-labeling asks per listing, over the configured verticals (equal weight)."""
    from attrpipe.pseudolabel.stages import asked_attributes
    from attrpipe.taxonomy import load_taxonomy

    t = cfg.taxonomy
    tax = load_taxonomy(t.path, list(t.verticals) or None)
    counts = [len(asked_attributes(tax, v, skip_non_inferable=t.skip_non_inferable,
                                   category_question=t.category_question)) for v in tax.verticals]
    return sum(counts) / len(counts)


def cmd_plan(args) -> int:
    from attrpipe.config import load_config

    cfg = load_config(args.config, args.overrides)
    e = cfg.ray.engine
    if args.attributes_per_listing is None:
        args.attributes_per_listing = asked_per_listing(cfg)
    prompt = args.prompt_text_tokens + args.images_per_listing * image_tokens(cfg.images.size)
    if args.study:
        return _cmd_plan_study(args, cfg, prompt)
    if args.listings is None:
        raise SystemExit("attrpipe plan: error: --listings is required (or --study)")
    if args.gpus is not None and len(args.gpus) != 1:
        raise SystemExit("attrpipe plan: error: --gpus takes one number for a round (several with --study)")
    plan = plan_round(
        listings=args.listings, attributes_per_listing=args.attributes_per_listing,
        chains=args.chains or cfg.generation.num_chains,
        tokens_per_chain=args.tokens_per_chain or cfg.generation.max_new_tokens, prompt_tokens=prompt,
        gpus=args.gpus[0] if args.gpus else max(1, int(e.num_actors * e.tensor_parallel_size)),
        tokens_per_s=args.tokens_per_s,
        prefill_tokens_per_s=args.prefill_tokens_per_s, keep_rate=args.keep_rate,
        pairs_per_kept=args.pairs_per_kept, dpo_epochs=cfg.dpo.epochs, train_tokens_per_s=args.train_tokens_per_s,
        eval_listings=args.eval_listings, eval_tokens=cfg.eval.max_new_tokens, efficiency=args.efficiency,
        startup_s=args.startup_s, rounds=args.rounds)
    print(format_plan(plan))
    return 0


def _cmd_plan_study(args, cfg, prompt: float) -> int:
    """``attrpipe plan --study KIND``: the configuration's study (attrpipe.plan_study)."""
    from attrpipe.plan_study import format_study_plan, plan_study
    from attrpipe.study_cluster import stage_needs

    sc = cfg.study
    if args.train_tokens_per_s is None:
        raise SystemExit("attrpipe plan: error: --study needs --train-tokens-per-s (every arm trains)")
    if args.study == "threshold" and args.listings is None:
        raise SystemExit("attrpipe plan: error: --study threshold needs --listings (its pool)")
    needs = stage_needs(cfg.ray)  # the GPUs each kind of stage asks for, as the study runner counts them
    engine_gpus = max(1, round(needs["generation"]["GPU"]))
    train_gpus = max(1, round(needs["training"]["GPU"]))
    try:
        plan = plan_study(
            kind=args.study, values=list(sc.thresholds) if args.study == "threshold" else list(sc.pool_sizes),
            methods=list(sc.methods), seeds=list(sc.seeds), rounds=int(sc.rounds), listings=args.listings,
            seed_listings=args.seed_listings, attributes_per_listing=args.attributes_per_listing,
            chains=args.chains or cfg.generation.num_chains,
            tokens_per_chain=args.tokens_per_chain or cfg.generation.max_new_tokens, prompt_tokens=prompt,
            tokens_per_s=args.tokens_per_s, train_tokens_per_s=args.train_tokens_per_s, engine_gpus=engine_gpus,
            train_gpus=train_gpus, cluster_gpus=args.gpus or [max(engine_gpus, train_gpus)],
            prefill_tokens_per_s=args.prefill_tokens_per_s, keep_rate=args.keep_rate,
            pairs_per_kept=args.pairs_per_kept, train_epochs=cfg.dpo.epochs, sft_epochs=cfg.sft.epochs,
            eval_listings=args.eval_listings, eval_tokens=cfg.eval.max_new_tokens, vote=bool(cfg.eval.vote),
            fit=bool(cfg.eval.fit), max_concurrent_arms=sc.max_concurrent_arms, efficiency=args.efficiency,
            startup_s=args.startup_s)
    except ValueError as exc:
        raise SystemExit(f"attrpipe plan: error: {exc}") from None
    print(format_study_plan(plan))
    return 0
