"""``attrpipe catalog check PATH CONFIG``: what pseudo-labeling would make of a catalog, without a model.

The schema is checked as every command checks it (attrpipe.preflight.check_dataset); then Ray Data streams the
catalog's units (the very units pseudo-labeling plans, ``data.unlabeled_limit`` included) through CPU actors that
validate every row with pseudo-labeling's own functions: the row checks (ids, duplicates, verticals, matched by case
and spaces with ``data.match_vertical_names`` and counted, images present, URIs) and each used image read within ``images.max_bytes`` and decoded by :func:`attrpipe.images.check_image` (the
pixel cap from the header first), fetched the same way when it is an ``http(s)://`` URL
(attrpipe.pseudolabel.stages.inspect_listing). So its would-quarantine counts are pseudo-labeling's quarantine
counts on the same catalog and configuration.

It prints a table (rows, would-label, would-quarantine by reason, images by format and by size) and writes the same
as JSON. Exit status: 0, or 1 when the schema is unusable or no row would be labeled.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from omegaconf import OmegaConf

from attrpipe import storage

__all__ = ["SIZE_BUCKETS", "size_bucket", "unit_tally", "merge_tallies", "run_catalog_check", "format_check",
           "default_report_path"]

# images by their longer side, in pixels
SIZE_BUCKETS = ((256, "< 256 px"), (512, "256-511 px"), (1024, "512-1023 px"), (2048, "1024-2047 px"),
                (None, ">= 2048 px"))


def size_bucket(width: int, height: int) -> str:
    side = max(width, height)
    for limit, name in SIZE_BUCKETS:
        if limit is None or side < limit:
            return name
    raise AssertionError("unreachable")


def unit_tally(outcomes: list) -> dict:
    """The counts of a unit's outcomes: each an InspectedListing (would be labeled) or a quarantine row (a dict)."""
    reasons: Counter = Counter()
    formats: Counter = Counter()
    sizes: Counter = Counter()
    matched: Counter = Counter()
    labeled = extra = n_images = n_bytes = 0
    for o in outcomes:
        if isinstance(o, dict):
            reasons[o["reason"]] += 1
            continue
        labeled += 1
        extra += o.extra_images
        if o.vertical_as_written is not None:
            matched[f"{o.vertical_as_written!r} -> {o.vertical}"] += 1
        for fmt, w, h, nbytes in o.images:
            n_images += 1
            n_bytes += nbytes
            formats[fmt] += 1
            sizes[size_bucket(w, h)] += 1
    return {"rows": len(outcomes), "would_label": labeled, "would_quarantine": sum(reasons.values()),
            "quarantine_reasons": dict(reasons), "extra_images_dropped": extra, "images": n_images,
            "image_bytes": n_bytes, "image_formats": dict(formats), "image_sizes": dict(sizes),
            "verticals_matched": dict(matched)}


def merge_tallies(tallies: list[dict]) -> dict:
    out = unit_tally([])
    for t in tallies:
        for k, v in t.items():
            if isinstance(v, dict):
                c = Counter(out[k])
                c.update(v)
                out[k] = dict(c)
            else:
                out[k] += v
    for k in ("quarantine_reasons", "image_formats", "verticals_matched"):
        out[k] = dict(sorted(out[k].items(), key=lambda kv: (-kv[1], kv[0])))
    order = [name for _, name in SIZE_BUCKETS]
    out["image_sizes"] = {b: out["image_sizes"][b] for b in order if b in out["image_sizes"]}
    return out


class CheckUnit:
    """The Ray Data map actor: one unit -> its tally (taxonomy and images settings built once per actor)."""

    def __init__(self, cfg_yaml: str, root: str, duplicates: list[str]):
        from attrpipe.catalog_io import CatalogReading
        from attrpipe.pseudolabel.stages import ImageSettings
        from attrpipe.taxonomy import load_taxonomy

        cfg = OmegaConf.create(cfg_yaml)
        self.taxonomy = load_taxonomy(cfg.taxonomy.path, cfg.taxonomy.verticals or None)
        self.images = ImageSettings.from_conf(cfg.images)
        self.reading = CatalogReading.from_conf(cfg)
        self.root = root
        self.duplicates = set(duplicates)

    def __call__(self, row: dict) -> dict:
        from attrpipe.pseudolabel.pipeline import CATALOG_COLUMNS
        from attrpipe.pseudolabel.stages import inspect_listing, start_fetches
        from attrpipe.pseudolabel.units import Unit, read_unit

        rows = list(read_unit(Unit(**row["unit"]), CATALOG_COLUMNS, self.reading))
        kw = dict(taxonomy=self.taxonomy, duplicates=self.duplicates, images=self.images, root=self.root,
                  match_vertical_names=self.reading.match_vertical_names)
        fetched = start_fetches(rows, **kw)
        return {"tally": json.dumps(unit_tally([inspect_listing(r, fetched=fetched, **kw) for r in rows]))}


def default_report_path(cfg) -> str:
    return storage.join(cfg.run.output_dir, cfg.run.name, "catalog_check.json")


def run_catalog_check(cfg, path: str, *, out: str | None = None, verbose: bool = True) -> dict:
    """Check ``path`` as pseudo-labeling with ``cfg`` would read it; write and return the report."""
    from attrpipe.catalog_io import CatalogReading
    from attrpipe.config import config_hash
    from attrpipe.preflight import InputError, check_dataset

    t0 = time.perf_counter()
    out = out or default_report_path(cfg)
    report = {"catalog": path, "config_hash": config_hash(cfg), "limit": cfg.data.unlabeled_limit,
              "schema_ok": True, "schema_error": None, "files": 0, "units": 0, "counts": merge_tallies([])}
    try:
        files = check_dataset(path, "PATH", "catalog", reading=CatalogReading.from_conf(cfg))
    except InputError as e:
        report.update(schema_ok=False, schema_error=str(e))
    else:
        report["files"] = len(files)
        report["counts"] = _tally_catalog(cfg, path, report)
    seconds = time.perf_counter() - t0
    report["seconds"] = round(seconds, 2)
    report["rows_per_s"] = round(report["counts"]["rows"] / seconds, 1) if seconds > 0 else None
    report["ok"] = report["schema_ok"] and report["counts"]["would_label"] > 0
    report["report"] = out
    storage.write_json_atomic(out, report)
    if verbose:
        print(format_check(report))
    return report


def _tally_catalog(cfg, path: str, report: dict) -> dict:
    import ray

    from attrpipe.catalog_io import CatalogReading
    from attrpipe.pseudolabel.pipeline import cpu_stage_resources
    from attrpipe.pseudolabel.units import find_duplicate_ids, plan_units
    from attrpipe.ray_utils import init_ray
    from attrpipe.train.examples import catalog_root

    units = plan_units(path, cfg.pseudolabel.listings_per_unit, cfg.data.unlabeled_limit)
    report["units"] = len(units)
    if not units:
        return merge_tallies([])
    init_ray(cfg)
    duplicates = sorted(find_duplicate_ids(path, CatalogReading.from_conf(cfg)))
    # one CPU stage, no engines: every CPU the cluster has (or ray.preprocess.max_actors)
    cpus, pool, _ = cpu_stage_resources(ray.cluster_resources().get("CPU", 0.0), 0.0,
                                        cfg.ray.preprocess.num_cpus_per_task, cfg.ray.preprocess.max_actors,
                                        len(units), stages=1)
    ds = ray.data.from_items([{"unit": u.to_dict()} for u in units], override_num_blocks=len(units))
    ds = ds.map(CheckUnit, fn_constructor_kwargs=dict(cfg_yaml=OmegaConf.to_yaml(cfg, resolve=True),
                                                      root=catalog_root(path), duplicates=duplicates),
                num_cpus=cpus, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool))
    # materialize(), then read the few small rows (one tally a unit): see run_pseudolabel on iter_rows()
    return merge_tallies([json.loads(r["tally"]) for r in ds.materialize().take_all()])


def format_check(report: dict) -> str:
    c = report["counts"]
    lines = [f"catalog check: {report['catalog']} ({report['files']} file(s), {report['units']} unit(s))"]
    if not report["schema_ok"]:
        lines.append(f"schema unusable: {report['schema_error']}")
    lines += [f"{'rows':<34}{c['rows']:>12}",
              f"{'  would label':<34}{c['would_label']:>12}",
              f"{'  would quarantine':<34}{c['would_quarantine']:>12}"]
    lines += [f"{'    ' + r:<34}{n:>12}" for r, n in c["quarantine_reasons"].items()]
    lines.append(f"{'extra images dropped':<34}{c['extra_images_dropped']:>12}")
    if c["verticals_matched"]:
        lines.append(f"{'verticals matched by case/spaces':<34}{sum(c['verticals_matched'].values()):>12}   "
                     "(data.match_vertical_names; false: quarantined as unknown_vertical)")
        lines += [f"{'  ' + m:<34}{n:>12}" for m, n in c["verticals_matched"].items()]
    mib = c["image_bytes"] / 2**20
    lines.append(f"{'images of the labeled rows':<34}{c['images']:>12}   ({mib:.1f} MiB encoded)")
    lines += [f"{'  ' + f:<34}{n:>12}" for f, n in c["image_formats"].items()]
    lines += [f"{'  longer side ' + b:<34}{n:>12}" for b, n in c["image_sizes"].items()]
    lines.append(f"{'seconds':<34}{report['seconds']:>12}   ({report['rows_per_s'] or 0:g} rows/s)")
    verdict = "ok" if report["ok"] else ("schema unusable" if not report["schema_ok"] else "no row would be labeled")
    lines.append(f"{verdict}; report: {report['report']}")
    return "\n".join(lines)
