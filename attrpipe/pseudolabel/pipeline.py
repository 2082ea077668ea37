"""Pseudo-labeling on Ray Data: units of listings stream through CPU preparation tasks, a pool of engine actors
and CPU scoring/writing tasks. The driver only plans units and sums the markers; it never holds the data.

    plan units (driver) -> [prepare: read rows, validate, load + resize images]  (CPU tasks)
                        -> [generate: n chains per listing-attribute]              (engine actor pool)
                        -> [score + write: consensus, pairs, quarantine, marker]   (CPU tasks)
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict

import pyarrow as pa
from omegaconf import OmegaConf

from attrpipe import storage
from attrpipe.catalog_io import CatalogReading
from attrpipe.config import config_hash
from attrpipe.console import Progress, echo
from attrpipe.engines.base import SamplingSpec
from attrpipe.pseudolabel.output import (
    MANIFEST_FILE,
    check_reusable,
    claim_output,
    committed_unit_ids,
    engine_busy_seconds,
    marker_path,
    progress_poll,
    run_identity,
    semantic_key,
    shard_rel,
    summarize,
    unit_counts,
)
from attrpipe.pseudolabel.incremental import (
    KEYS_DIR,
    build_index,
    carry_over,
    check_since,
    content_key,
    read_index,
    status_of,
    vertical_identities,
)
from attrpipe.pseudolabel.stages import (
    ImageSettings,
    PreparedListing,
    asked_attributes,
    listing_requests,
    pending_requests,
    prediction_rows,
    prepare_listing,
    score_listing,
    start_fetches,
    texts_with_cache,
)
from attrpipe.pseudolabel.units import Unit, find_duplicate_ids, plan_units, read_labels, read_unit
from attrpipe.schemas import (
    CONSENSUS_SCHEMA,
    KEYS_SCHEMA,
    PAIRS_SCHEMA,
    PREDICTIONS_SCHEMA,
    QUARANTINE_SCHEMA,
    REVIEW_SCHEMA,
)
from attrpipe.taxonomy import load_taxonomy
from attrpipe.train.examples import catalog_root

__all__ = ["run_pseudolabel", "output_dir_for", "identities_for", "cpu_stage_resources", "format_summary"]

CATALOG_COLUMNS = ["listing_id", "vertical", "image_uris", "image_bytes"]


def cpu_stage_resources(cluster_cpus: float, engine_cpus: float, num_cpus_per_task: float, max_actors: int | None,
                        pending_units: int, stages: int = 2) -> tuple[float, int, bool]:
    """CPUs per actor and largest pool size of each CPU stage (prepare; score + write), and whether the engine
    actors' CPUs are kept free: ``(cpus_per_actor, max_pool_size, reserved)``.

    ``max_actors`` null (the default): every CPU-stage actor and every engine actor fit on the cluster at once, as
    counted when the run starts. A restarted engine actor (killed or preempted) then finds its CPUs free instead of
    waiting forever behind CPU-stage actors that wait for it, and the stages stream side by side. Each stage keeps at
    least one actor; when the CPUs the engines leave cannot give each stage ``num_cpus_per_task``, its actors get an
    equal share instead (2 CPUs, one 1-CPU engine: 0.5 each). If the cluster cannot hold the engines yet (an
    autoscaling cluster starting from zero workers), nothing is reserved: the autoscaler adds nodes for whatever
    waits, a restarted engine actor included, and the pools scale with the backlog.

    ``max_actors`` set: each stage scales up to that many actors of ``num_cpus_per_task`` whatever the cluster has
    now (for autoscaling clusters, whose CPUs grow after the start); keeping CPUs for the engines is then the
    operator's choice of numbers.
    """
    cap = max(1, pending_units)
    if max_actors is not None:
        return num_cpus_per_task, min(max_actors, cap), False
    free = cluster_cpus - engine_cpus
    if free <= 0:
        return num_cpus_per_task, cap, False
    per_actor = min(num_cpus_per_task, free / stages)
    size = max(1, int(free / stages / per_actor + 1e-9))
    return per_actor, min(size, cap), True


def identities_for(cfg, key: dict) -> dict[str, str]:
    """vertical -> its labeling identity for a run of ``key`` (semantic_key): the first part of its listings' content
    keys (attrpipe.pseudolabel.incremental)."""
    taxonomy = load_taxonomy(cfg.taxonomy.path, cfg.taxonomy.verticals or None)
    t = cfg.taxonomy
    return vertical_identities(key, taxonomy, {
        v: asked_attributes(taxonomy, v, skip_non_inferable=t.skip_non_inferable, category_question=t.category_question)
        for v in taxonomy.verticals})


def output_dir_for(cfg) -> str:
    return cfg.pseudolabel.output or storage.join(cfg.run.output_dir, cfg.run.name, "pseudolabels")


# --- stages run by Ray ------------------------------------------------------------------------------------------


class _Context:
    """What every stage needs, rebuilt once per worker/actor from plain values."""

    def __init__(self, cfg_yaml: str):
        self.cfg = OmegaConf.create(cfg_yaml)
        self.taxonomy = load_taxonomy(self.cfg.taxonomy.path, self.cfg.taxonomy.verticals or None)
        self.images = ImageSettings.from_conf(self.cfg.images)
        self.reading = CatalogReading.from_conf(self.cfg)
        # Plain values: OmegaConf attribute access is too slow for the per-listing hot path.
        self.threshold = float(self.cfg.consensus.threshold)
        self.seed = int(self.cfg.run.seed)
        self.round = int(self.cfg.pseudolabel.round)
        t = self.cfg.taxonomy
        self._attributes = {
            v: asked_attributes(self.taxonomy, v, skip_non_inferable=t.skip_non_inferable,
                                category_question=t.category_question)
            for v in self.taxonomy.verticals
        }

    def attributes(self, vertical: str):
        return self._attributes[vertical]


class PrepareUnit:
    def __init__(self, cfg_yaml: str, root: str, duplicates: list[str], identities: dict[str, str],
                 reuse_chains_from: str | None = None, index_of: str | None = None, relabel_all: bool = False):
        self.ctx = _Context(cfg_yaml)
        self.root = root
        self.duplicates = set(duplicates)
        self.identities = identities  # vertical -> its labeling identity (the content keys' first part)
        self.reuse = reuse_chains_from
        self.index_of = index_of  # --since: the output whose _since/ index says what each listing was before
        self.relabel_all = relabel_all  # --relabel-all: nothing is carried over

    def cached_chains(self, unit_id: str, listing_ids: set[str]) -> dict[str, list[str]]:
        """example id -> chain texts from the same unit of the run whose chains are reused (none if it has no shard:
        the unit is then generated)."""
        if not self.reuse:
            return {}
        shard = storage.join(self.reuse, shard_rel("consensus", unit_id))
        if not storage.exists(shard):
            return {}
        rows = storage.read_parquet(shard, columns=["example_id", "listing_id", "chains"]).to_pylist()
        return {r["example_id"]: [c["text"] for c in r["chains"]] for r in rows if r["listing_id"] in listing_ids}

    def __call__(self, row: dict) -> dict:
        unit = Unit(**row["unit"])
        listings, quarantine = [], []
        rows = list(read_unit(unit, CATALOG_COLUMNS, self.ctx.reading))
        n_in = len(rows)
        kw = dict(taxonomy=self.ctx.taxonomy, duplicates=self.duplicates, images=self.ctx.images, root=self.root,
                  match_vertical_names=self.ctx.reading.match_vertical_names)
        fetched = start_fetches(rows, **kw)
        before = read_index(self.index_of, unit.unit_id) if self.index_of else None
        carried, order = [], []
        for r in rows:
            out = prepare_listing(r, fetched=fetched, is_unchanged=None if before is None or self.relabel_all else (
                lambda lid, v, digests: before.get(lid, (None,))[0] == content_key(self.identities[v], digests)),
                **kw)
            if not isinstance(out, PreparedListing):
                quarantine.append(out)
                continue
            order.append(out.listing_id)
            out.content_key = content_key(self.identities[out.vertical], out.image_digests)
            if before is not None:
                out.status = status_of(before.get(out.listing_id, (None,))[0], out.content_key,
                                       relabel_all=self.relabel_all)
            if out.unchanged:  # its rows come from the previous output, never from the engine
                carried.append({"listing_id": out.listing_id, "vertical": out.vertical,
                                "content_key": out.content_key, "previous_unit": before[out.listing_id][1],
                                "image_uris": out.image_uris, "images_dropped": out.extra_images,
                                "vertical_matched": out.vertical_matched})
            else:
                listings.append(asdict(out))
        cached = self.cached_chains(unit.unit_id, {d["listing_id"] for d in listings})
        return {"unit": row["unit"], "n_in": n_in, "listings": listings, "quarantine": quarantine,
                "cached": json.dumps(cached), "carried": json.dumps(carried), "order": order}


_ACTOR = f"{socket.gethostname()}:{os.getpid()}"  # an engine actor's process: its units' busy intervals are merged


class GenerateUnit:
    """The engine actor: owns one engine (transformers or vLLM) for its lifetime."""

    def __init__(self, cfg_yaml: str, adapter: str | None, greedy: bool = False):
        from attrpipe.engines import make_engine

        self.ctx = _Context(cfg_yaml)
        self.engine = make_engine(self.ctx.cfg, adapter=adapter)
        cfg = self.ctx.cfg
        self.sampling = (SamplingSpec.greedy_decoding(cfg.eval.max_new_tokens) if greedy
                         else SamplingSpec.sampling(cfg.generation, cfg.run.seed))

    def _requests(self, row: dict) -> tuple[list, list[tuple[int, int]], dict]:
        requests, spans = [], []
        for d in row["listings"]:
            listing = PreparedListing(**d)
            reqs = listing_requests(listing, self.ctx.taxonomy, self.ctx.attributes(listing.vertical))
            spans.append((len(requests), len(requests) + len(reqs)))
            requests.extend(reqs)
        return requests, spans, json.loads(row.pop("cached", None) or "{}")

    def _finish(self, row: dict, texts, reused: int, spans, started: float, ended: float) -> dict:
        # when the engine worked on this unit, and on which actor: the manifest's engine-busy seconds are the union
        # of each actor's intervals (units in flight together overlap), summed over actors (gpu-check divides the
        # generated tokens by them). A dict of one type per field: Arrow stores it as a struct column (a mixed list
        # would be pickled)
        row["generate_interval"] = {"start": round(started, 6), "end": round(ended, 6), "actor": _ACTOR}
        row["texts"] = [texts[a:b] for a, b in spans]
        for d in row["listings"]:  # scoring needs the image references, not the decoded pixels: don't ship them on
            d["pixels"] = []
        row["reused"] = reused * self.sampling.n  # chains
        row["identity"] = json.dumps(self.engine.identity(), sort_keys=True)
        return row

    def __call__(self, row: dict) -> dict:
        requests, spans, cached = self._requests(row)
        t0 = time.time()
        texts, reused = texts_with_cache(requests, cached, self.sampling.n,
                                         lambda todo: self.engine.generate(todo, self.sampling))
        return self._finish(row, texts, reused, spans, t0, time.time())


class GenerateUnitAsync(GenerateUnit):
    """The engine actor with ``ray.engine.units_in_flight`` > 1: Ray Data runs up to that many calls at once on the
    actor's event loop, and the engine (vLLM's async engine) batches their requests together. Each unit's row is
    still complete and independent: the same requests, per-request seeds and output as :class:`GenerateUnit`."""

    def __init__(self, cfg_yaml: str, adapter: str | None, greedy: bool = False):
        super().__init__(cfg_yaml, adapter, greedy)
        if not hasattr(self.engine, "generate_async"):
            raise ValueError(f"ray.engine.units_in_flight > 1: the engine {type(self.engine).__name__} has no "
                             "generate_async; set ray.engine.units_in_flight: 1")

    async def __call__(self, row: dict) -> dict:
        requests, spans, cached = self._requests(row)
        t0 = time.time()
        todo = pending_requests(requests, cached)
        generated = await self.engine.generate_async(todo, self.sampling) if todo else []
        texts, reused = texts_with_cache(requests, cached, self.sampling.n, lambda _: generated)
        return self._finish(row, texts, reused, spans, t0, time.time())


class ScoreAndWriteUnit:
    def __init__(self, cfg_yaml: str, out: str, predict: dict | None = None, truth: str | None = None,
                 since: str | None = None):
        self.ctx = _Context(cfg_yaml)
        self.out = out
        self.since = since  # the previous output the carried-over listings' rows are copied from
        self.predict = predict  # {"review_below": float, "greedy": bool}: also write predictions/ and review/
        # the oracle arms (diagnostic): the true labels stand in for the consensus
        self.truth = None if truth is None else read_labels(truth, self.ctx.reading)

    def __call__(self, row: dict) -> dict:
        ctx = self.ctx
        unit = Unit(**row["unit"])
        identity = json.loads(row["identity"]) if row.get("identity") else {}
        consensus, pairs, keys = [], [], []
        extra = matched = 0
        for d, texts in zip(row["listings"], row.get("texts") or [], strict=True):
            listing = PreparedListing(**d)
            keys.append({"listing_id": listing.listing_id, "vertical": listing.vertical,
                         "content_key": listing.content_key, "status": listing.status})
            extra += listing.extra_images
            matched += listing.vertical_matched
            c, p = score_listing(listing, ctx.taxonomy, ctx.attributes(listing.vertical), [list(t) for t in texts],
                                 threshold=ctx.threshold, seed=ctx.seed, round_index=ctx.round, identity=identity,
                                 truth=None if self.truth is None else self.truth.get(listing.listing_id, {}))
            consensus.extend(c)
            pairs.extend(p)
        quarantine = list(row["quarantine"])
        review: list[dict] = []
        predictions: list[dict] = []
        if self.predict is not None:
            predictions, review = prediction_rows(consensus, review_below=self.predict["review_below"],
                                                  greedy=self.predict["greedy"])
        carried = json.loads(row.get("carried") or "[]")
        new_rows = {"consensus": consensus, "pairs": pairs, "predictions": predictions, "review": review}
        if carried:  # the unchanged listings: their rows as the previous output has them, in input order
            old = carry_over(self.since, carried)
            position = {lid: i for i, lid in enumerate(row["order"])}
            for name, rows in new_rows.items():
                rows.extend(old[name])
                rows.sort(key=lambda r: position[r["listing_id"]])  # stable: each listing's rows keep their order
            keys += [{k: c[k] for k in ("listing_id", "vertical", "content_key")} | {"status": "carried_over"}
                     for c in carried]
            keys.sort(key=lambda r: position[r["listing_id"]])
            extra += sum(c["images_dropped"] for c in carried)
            matched += sum(c["vertical_matched"] for c in carried)
        outputs = [("consensus", consensus, CONSENSUS_SCHEMA), ("pairs", pairs, PAIRS_SCHEMA),
                   ("quarantine", quarantine, QUARANTINE_SCHEMA), (KEYS_DIR, keys, KEYS_SCHEMA)]
        if self.predict is not None:
            outputs += [("predictions", predictions, PREDICTIONS_SCHEMA), ("review", review, REVIEW_SCHEMA)]
        files = {}
        for name, rows, schema in outputs:
            dest = storage.join(self.out, shard_rel(name, unit.unit_id))
            if rows:
                storage.write_parquet_atomic(dest, pa.Table.from_pylist(rows, schema=schema))
                files[name] = shard_rel(name, unit.unit_id)
            else:
                storage.remove_file(dest)  # a stale shard of an interrupted earlier attempt
        counts = unit_counts(row["n_in"], len(row["listings"]) + len(carried), extra, consensus, pairs, quarantine,
                             reused=int(row.get("reused") or 0), review=len(review), verticals_matched=matched,
                             keys=keys)
        interval = row.get("generate_interval") or {"start": 0.0, "end": 0.0, "actor": None}
        marker = {"unit": row["unit"], "files": files, "counts": counts,
                  "generate_seconds": round(interval["end"] - interval["start"], 6), "generate_interval": interval}
        storage.write_json_atomic(marker_path(self.out, unit.unit_id), marker)
        return {"unit_id": unit.unit_id, "counts": json.dumps(counts)}


# --- driver -----------------------------------------------------------------------------------------------------


def run_pseudolabel(cfg, *, catalog: str | None = None, out: str | None = None, adapter: str | None = None,
                    greedy: bool = False, limit: int | None = None, reuse_chains_from: str | None = None,
                    review_below: float | None = None, truth: str | None = None, verbose: bool = True,
                    label: str | None = None, since: str | None = None, relabel_all: bool = False) -> dict:
    """Pseudo-label a catalog; resumable: rerunning skips units already committed. Returns the manifest.

    - ``greedy=True`` decodes one chain per listing-attribute greedily with ``eval.max_new_tokens`` instead of
      sampling ``generation.num_chains``: evaluation and prediction use the very same pipeline that way.
    - ``limit``: only the first ``limit`` listings of the catalog (a pool of that size).
    - ``reuse_chains_from``: an earlier output whose chains were sampled with the same model, adapter, sampling
      settings and seed (checked): its chains are taken instead of sampling again, unit by unit, and only the scoring
      (threshold, pairs) is redone. Studies use it to sweep the threshold or the pool size over one generation.
    - ``review_below``: also write ``predictions/`` (one row per listing-attribute) and ``review/`` (those with no
      answer or, with sampled chains, C below this) for ``attrpipe predict``.
    - ``truth``: a labeled slice of the pool (listing_id, labels): score the chains against the true labels instead
      of their consensus (the diagnostic oracle arms, attrpipe.methods; ``_run.json`` records it as ``oracle_truth``
      so the audit scores them the same way).
    - ``label``: what the progress line calls the work (default: pseudolabel, evaluate or predict, by the above).
    - ``since``: a previous output of the same labeling identity (attrpipe.pseudolabel.incremental): listings whose
      content key it holds are carried over without reaching the engine, the others labeled; the manifest counts
      carried over / relabeled / new / removed / quarantined. ``relabel_all``: the previous output may have another
      labeling identity, and every listing is labeled (the counts still compare the catalogs).

    One process at a time fills an output directory; a second waits for it, then resumes (attrpipe.storage.locked).
    """
    out = out or output_dir_for(cfg)
    with storage.locked(storage.join(out, ".pseudolabel"), what=f"the pseudo-labeling output {out}"):
        return _run_pseudolabel(cfg, catalog=catalog, out=out, adapter=adapter, greedy=greedy, limit=limit,
                                reuse_chains_from=reuse_chains_from, review_below=review_below, truth=truth,
                                verbose=verbose, label=label, since=since, relabel_all=relabel_all)


def _run_pseudolabel(cfg, *, catalog: str | None, out: str, adapter: str | None, greedy: bool, limit: int | None,
                     reuse_chains_from: str | None, review_below: float | None, truth: str | None,
                     verbose: bool, label: str | None = None, since: str | None = None,
                     relabel_all: bool = False) -> dict:
    import ray

    from attrpipe.ray_utils import init_ray

    t0 = time.perf_counter()
    catalog = catalog or cfg.data.unlabeled
    adapter = adapter if adapter is not None else cfg.pseudolabel.adapter
    identity = run_identity(cfg, adapter)
    key = semantic_key(cfg, catalog, identity, greedy, limit, review_below)
    if truth is not None:
        if greedy:
            raise ValueError("truth (oracle scoring) is for sampled chains, not greedy decoding")
        if not storage.exists(truth):
            raise FileNotFoundError(f"the truth file {truth!r} does not exist: nothing to score the chains against")
        key["oracle_truth"] = truth  # only when set: the keys of every other run are unchanged
    if reuse_chains_from is not None:
        if greedy:
            raise ValueError("reuse_chains_from is for sampled chains, not greedy decoding")
        check_reusable(reuse_chains_from, key)
    previous_manifest = None
    if since is not None:
        if since.rstrip("/") == out.rstrip("/"):
            raise ValueError(f"--since {since}: the previous output cannot be this run's own output")
        check_since(since, key, relabel_all=relabel_all)
        previous_manifest = storage.read_json(storage.join(since, MANIFEST_FILE))
        key["since"] = since  # only when set, as oracle_truth: the keys of every other run are unchanged
        key["relabel_all"] = relabel_all
    key_hash = claim_output(out, key)
    identities = identities_for(cfg, key)

    units = plan_units(catalog, cfg.pseudolabel.listings_per_unit, limit)
    done = committed_unit_ids(out)
    pending = [u for u in units if u.unit_id not in done]
    if verbose:
        print(f"pseudolabel: {len(units)} units of <= {cfg.pseudolabel.listings_per_unit} listings, "
              f"{len(units) - len(pending)} already done, {len(pending)} to run -> {out}")
    index = None
    if since is not None:
        init_ray(cfg)
        index = build_index(since, out, units, CatalogReading.from_conf(cfg).key_entry())
    if pending:
        init_ray(cfg)
        cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        duplicates = sorted(find_duplicate_ids(catalog, CatalogReading.from_conf(cfg)))
        e = cfg.ray.engine
        # Each CPU stage is an actor pool that Ray Data scales with its backlog, within the CPUs the engine actors
        # leave (cpu_stage_resources); every actor holds a taxonomy and its buffers (~150 MB), so
        # ray.preprocess.max_actors also caps a pool where memory matters more than speed.
        cluster_cpus = cfg.ray.preprocess.cpus_available or ray.cluster_resources().get("CPU", 0.0)
        engine_cpus = e.num_actors * e.num_cpus_per_actor
        cpu_per_actor, cpu_pool_size, reserved = cpu_stage_resources(
            cluster_cpus, engine_cpus, cfg.ray.preprocess.num_cpus_per_task, cfg.ray.preprocess.max_actors,
            len(pending))
        if verbose:
            print(f"pseudolabel: CPU stages: up to {cpu_pool_size} actor(s) each of {cpu_per_actor:g} CPU; "
                  + (f"the engines' {engine_cpus:g} of {cluster_cpus:g} CPUs kept free"
                     if reserved else "no CPUs kept free for the engines (ray.preprocess.max_actors is set, or the "
                     "cluster cannot hold the engines yet)"))
        cpu_pool = ray.data.ActorPoolStrategy(min_size=1, max_size=cpu_pool_size)
        ds = ray.data.from_items([{"unit": u.to_dict()} for u in pending], override_num_blocks=len(pending))
        ds = ds.map(PrepareUnit, fn_constructor_kwargs=dict(cfg_yaml=cfg_yaml, root=catalog_root(catalog),
                                                            duplicates=duplicates, identities=identities,
                                                            reuse_chains_from=reuse_chains_from,
                                                            index_of=out if since is not None else None,
                                                            relabel_all=relabel_all),
                    num_cpus=cpu_per_actor, compute=cpu_pool)
        # units_in_flight > 1: as many calls at once per actor (its max_concurrency), and as many units handed to
        # it ahead (max_tasks_in_flight_per_actor), the way ray.data.llm's own vLLM stage overlaps its batches
        k = int(e.units_in_flight)
        ds = ds.map(GenerateUnitAsync if k > 1 else GenerateUnit,
                    fn_constructor_kwargs=dict(cfg_yaml=cfg_yaml, adapter=adapter, greedy=greedy),
                    compute=ray.data.ActorPoolStrategy(size=e.num_actors,
                                                       max_tasks_in_flight_per_actor=k if k > 1 else None),
                    num_gpus=e.num_gpus_per_actor * e.tensor_parallel_size or None, num_cpus=e.num_cpus_per_actor,
                    **({"max_concurrency": k} if k > 1 else {}))
        predict = None if review_below is None else {"review_below": review_below, "greedy": greedy}
        ds = ds.map(ScoreAndWriteUnit, fn_constructor_kwargs=dict(cfg_yaml=cfg_yaml, out=out, predict=predict,
                                                                  truth=truth, since=since),
                    num_cpus=cpu_per_actor, compute=cpu_pool)
        # Run to the end. Each unit's result is one small row (its id and counts); the data went to the shards.
        # Not `iter_rows()`: its prefetcher reports the bytes it holds to the executor as an external consumer,
        # and with the downstream-capacity backpressure always on (attrpipe.ray_utils) the last stage was held
        # back against those few bytes while the consumer waited for it: a stall, seen at 50k of 1M listings
        # (Ray 2.60; the stage idle, "backpressured:tasks(DownstreamCapacity)", its input queue growing).
        # materialize() keeps the one-row-per-unit results (~100 bytes each) and has no such consumer.
        label = label or ("evaluate" if greedy and review_below is None else ("predict" if greedy else "pseudolabel"))
        with Progress(label, progress_poll(out, units, done), unit="listings", interval=2.0):
            ds.materialize()
    markers = [storage.read_json(marker_path(out, u.unit_id)) for u in units]
    totals = summarize(markers)
    manifest = {
        "config_hash": config_hash(cfg),
        "key_hash": key_hash,
        "catalog": catalog,
        "output": out,
        "identity": identity,
        "threshold": cfg.consensus.threshold,
        "num_chains": 1 if greedy else cfg.generation.num_chains,
        "greedy": greedy,
        "limit": limit,
        "reused_chains_from": reuse_chains_from,
        "oracle_truth": truth,
        "review_below": review_below,
        "round": cfg.pseudolabel.round,
        "units": len(units),
        "counts": totals,
        # the engine actors' busy seconds: per actor the union of its units' intervals, summed over actors
        "generate_seconds": engine_busy_seconds(markers),
        "seconds_this_invocation": round(time.perf_counter() - t0, 2),
    }
    if since is not None:
        manifest["incremental"] = {
            "since": since, "relabel_all": relabel_all,
            "previous_listings": previous_manifest["counts"]["listings_labeled"],
            "carried_over": totals["listings_carried_over"], "relabeled": totals["listings_relabeled"],
            "new": totals["listings_new"], "removed": index["removed"],
            "quarantined": totals["listings_quarantined"],
        }
    storage.write_json_atomic(storage.join(out, MANIFEST_FILE), manifest)
    if verbose:
        echo(format_summary(manifest))
    return manifest


def format_summary(manifest: dict) -> str:
    c = manifest["counts"]
    lines = [f"{'listings in':<28}{c['listings_in']:>10}",
             f"{'  labeled':<28}{c['listings_labeled']:>10}",
             f"{'  quarantined':<28}{c['listings_quarantined']:>10}"]
    lines += [f"{'    ' + r:<28}{n:>10}" for r, n in c["quarantine_reasons"].items()]
    lines += [f"{'listing-attributes':<28}{c['listing_attributes']:>10}",
              f"{'  kept (C >= ' + str(manifest['threshold']) + ')':<28}{c['kept']:>10}"
              + ("   (oracle: C against the true labels; diagnostic)" if manifest.get("oracle_truth") else ""),
              f"{'  below threshold':<28}{c['below_threshold']:>10}",
              f"{'    of which no consensus':<28}{c['no_consensus']:>10}",
              f"{'chains':<28}{c['chains']:>10}",
              f"{'  unparsed':<28}{c['chains_unparsed']:>10}"]
    if c.get("chains_reused"):
        lines.append(f"{'  reused, not sampled':<28}{c['chains_reused']:>10}")
    if c.get("chains_carried_over"):
        lines.append(f"{'  carried over (--since)':<28}{c['chains_carried_over']:>10}")
    lines += [f"{'pairs written':<28}{c['pairs']:>10}",
              f"{'extra images dropped':<28}{c['extra_images_dropped']:>10}"]
    if c.get("verticals_matched"):
        lines.append(f"{'verticals matched by case':<28}{c['verticals_matched']:>10}   (data.match_vertical_names)")
    if manifest.get("review_below") is not None:
        lines.append(f"{'predictions for review':<28}{c['predictions_for_review']:>10}")
    inc = manifest.get("incremental")
    if inc:
        lines += [f"since {inc['since']}" + ("  (--relabel-all)" if inc["relabel_all"] else "")]
        lines += [f"{'  ' + k.replace('_', ' '):<28}{inc[k]:>10}"
                  for k in ("carried_over", "relabeled", "new", "removed", "quarantined")]
    return "\n".join(lines) + f"\nmanifest: {storage.join(manifest['output'], MANIFEST_FILE)}"
