"""The pseudo-labeling stages as plain functions (Ray only strings them together; see pipeline.py).

1. :func:`prepare_listing`  validate one catalog row and load its images  -> a prepared listing or a quarantine row
2. :func:`listing_requests` one generation request per asked attribute, all sharing the listing's images
3. :func:`score_listing`    chains -> consensus rows and DPO pair rows (attrpipe.scoring.score_chains)
4. :func:`prediction_rows`  consensus rows -> prediction and review rows (``attrpipe predict``)

Quarantine reason codes (listing level; one row per quarantined input row):

- ``unreadable_catalog_rows``: a catalog file that is not Parquet (one row: the file) or a corrupt row group (one
  row per row it holds),
- ``missing_listing_id``, ``duplicate_listing_id`` (every row of an id that occurs more than once),
  ``unknown_vertical`` (a vertical differing from the taxonomy's only by case or surrounding spaces is matched to it
  when ``data.match_vertical_names``; the listing's rows carry the taxonomy's name), ``no_images``,
- ``image_<code>`` when any of the kept images fails, with the codes of attrpipe.images: ``image_bad_uri``,
  ``image_missing``, ``image_too_many_bytes``, ``image_not_an_image``, ``image_too_many_pixels``,
  ``image_truncated``, and for ``http(s)://`` images ``image_http_status``, ``image_timeout``,
  ``image_http_redirects``, ``image_private_host``, ``image_host_not_allowed``, ``image_unreachable``. A listing is
  quarantined whole when one of its views is bad: a partial set of views may hide the very attribute asked about.

A listing with more than ``images.max_images`` images keeps the first ones; ``extra_images`` records how many were
dropped and the unit's counts add them up.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Mapping

from PIL import Image

from attrpipe.consensus import example_id
from attrpipe.engines.base import GenerationRequest
from attrpipe.http_images import HttpSettings, is_http
from attrpipe.images import ImageError, check_image, decode_image, read_bytes, resolve_uri
from attrpipe.images import fetched as fetched_bytes
from attrpipe.prompts import build_messages, user_text
from attrpipe.pseudolabel.incremental import image_digest
from attrpipe.scoring import score_chains
from attrpipe.taxonomy import Attribute, Taxonomy

__all__ = [
    "ImageSettings",
    "PreparedListing",
    "prepare_listing",
    "inspect_listing",
    "http_locations",
    "start_fetches",
    "asked_attributes",
    "listing_requests",
    "score_listing",
    "prediction_rows",
    "quarantine_row",
    "pending_requests",
    "texts_with_cache",
]


@dataclass(frozen=True)
class ImageSettings:
    size: int
    max_images: int
    max_pixels: int
    max_bytes: int
    allowed_schemes: tuple[str, ...]
    http: HttpSettings = field(default_factory=HttpSettings)

    @classmethod
    def from_conf(cls, images_conf) -> "ImageSettings":
        c = images_conf
        return cls(c.size, c.max_images, c.max_pixels, c.max_bytes, tuple(c.allowed_schemes),
                   HttpSettings.from_conf(c))


@dataclass
class PreparedListing:
    listing_id: str
    vertical: str
    source: str
    pixels: list[bytes]  # raw RGB bytes, size x size x 3 each
    size: int
    image_uris: list[str] | None  # resolved URIs (None when the images were inline)
    image_bytes: list[bytes] | None  # the original inline bytes (None when read from URIs)
    extra_images: int = 0
    vertical_matched: bool = False  # the row named the vertical differently (case, spaces): matched to this one
    image_digests: list[str] = field(default_factory=list)  # sha256 of each used image's bytes as read
    unchanged: bool = False  # ``is_unchanged`` said so (--since): not decoded (``pixels`` empty), not generated
    content_key: str = ""  # attrpipe.pseudolabel.incremental.content_key, set by the pipeline
    status: str = "labeled"  # keys/'s status (incremental.STATUSES)

    def pil_images(self) -> list[Image.Image]:
        return [Image.frombytes("RGB", (self.size, self.size), p) for p in self.pixels]


def quarantine_row(row: dict, reason: str, detail: str = "") -> dict:
    lid = row.get("listing_id")
    vertical = row.get("vertical")
    return {
        "listing_id": lid if isinstance(lid, str) else None,
        "vertical": vertical if isinstance(vertical, str) else None,
        "source": row.get("_source", ""),
        "reason": reason,
        "detail": detail or None,
    }


@dataclass
class InspectedListing:
    """A listing ``attrpipe catalog check`` would label, with what it found of each used image."""

    listing_id: str
    vertical: str
    source: str
    images: list[tuple[str, int, int, int]]  # (format, width, height, encoded bytes) of each used image
    extra_images: int = 0
    vertical_as_written: str | None = None  # the row's vertical when it was matched by case or spaces


def _row_sources(row: dict, *, taxonomy: Taxonomy, duplicates: set[str], images: ImageSettings,
                 match_vertical_names: bool = False
                 ) -> tuple[str, str, list[tuple[str | None, bytes | None]], int, bool] | dict:
    """The row-level checks: ``(listing_id, vertical, used image sources, images dropped, inline)`` or a quarantine
    row. A source is ``(uri, None)`` or ``(None, inline bytes)``; the vertical is the taxonomy's name for the row's
    (``match_vertical_names``: also one that differs only by case or surrounding spaces)."""
    if "_error" in row:  # rows the catalog file would not give up (attrpipe.pseudolabel.units.read_unit)
        return quarantine_row(row, "unreadable_catalog_rows", row["_error"])
    lid = row.get("listing_id")
    if not isinstance(lid, str) or not lid.strip():
        return quarantine_row(row, "missing_listing_id")
    if lid in duplicates:
        return quarantine_row(row, "duplicate_listing_id", "this listing_id occurs more than once in the catalog")
    vertical = taxonomy.match_vertical(row.get("vertical"), match_vertical_names)
    if vertical is None:
        return quarantine_row(row, "unknown_vertical", f"{row.get('vertical')!r} is not in the taxonomy")
    inline = [b for b in (row.get("image_bytes") or []) if b is not None]
    uris = list(row.get("image_uris") or [])
    sources: list[tuple[str | None, bytes | None]] = [(None, b) for b in inline] if inline else [(u, None) for u in uris]
    if not sources:
        return quarantine_row(row, "no_images")
    extra = max(0, len(sources) - images.max_images)
    return lid, vertical, sources[: images.max_images], extra, bool(inline)


def _checked_images(row: dict, sources, *, images: ImageSettings, root: str | None,
                    fetched: Mapping[str, Future] | None, each: Callable[[bytes], object],
                    skip: Callable[[list[bytes]], bool] | None = None) -> tuple[list, list[str]] | dict:
    """``each(encoded bytes)`` of every used image, in order, and the resolved URIs; or the quarantine row of the
    first image that fails (``image_<reason>``, its index in the detail). ``fetched``: futures of ``http(s)://``
    images already being fetched (:func:`http_locations`); any other http image is fetched here.

    Every image is read first, then ``each`` runs on them in order; the first failure in order wins (a read failure
    of image k is reported only when images 0..k-1 pass ``each``). ``skip(every image's bytes)`` true: ``each``
    does not run (an unchanged listing, known by its bytes) and the results are empty."""
    data_read, resolved = [], []
    failed = None
    for k, (uri, data) in enumerate(sources):
        try:
            if data is None:
                location = resolve_uri(uri or "", root, images.allowed_schemes)
                resolved.append(location)
                if fetched is not None and location in fetched:
                    data = fetched_bytes(fetched[location])
                else:
                    data = read_bytes(location, images.max_bytes, images.http)
            data_read.append(data)
        except ImageError as e:
            failed = (k, e, uri)
            break
    if failed is None and skip is not None and skip(data_read):
        return [], resolved
    results = []
    for k, data in enumerate(data_read):
        try:
            results.append(each(data))
        except ImageError as e:
            return quarantine_row(row, f"image_{e.reason}", f"image {k}: {e.detail or sources[k][0] or ''}"[:500])
    if failed is not None:
        k, e, uri = failed
        return quarantine_row(row, f"image_{e.reason}", f"image {k}: {e.detail or uri or ''}"[:500])
    return results, resolved


def http_locations(row: dict, *, taxonomy: Taxonomy, duplicates: set[str], images: ImageSettings,
                   root: str | None, match_vertical_names: bool = False) -> list[str]:
    """The ``http(s)://`` images :func:`prepare_listing` would fetch for this row (none for a row it quarantines
    before its images), so a stage can start fetching them all at once."""
    checked = _row_sources(row, taxonomy=taxonomy, duplicates=duplicates, images=images,
                           match_vertical_names=match_vertical_names)
    if isinstance(checked, dict) or checked[4]:
        return []
    out = []
    for uri, _ in checked[2]:
        try:
            location = resolve_uri(uri or "", root, images.allowed_schemes)
        except ImageError:
            break  # the listing stops at this image
        if is_http(location):
            out.append(location)
    return out


def start_fetches(rows: list[dict], *, taxonomy: Taxonomy, duplicates: set[str], images: ImageSettings,
                  root: str | None, match_vertical_names: bool = False) -> dict[str, Future] | None:
    """Start fetching every ``http(s)://`` image of these rows at once, through the worker's pooled session (which
    bounds how many are in flight); None when http is not allowed or the rows have none. Pass the result to
    :func:`prepare_listing` / :func:`inspect_listing` as ``fetched``."""
    if not images.http.allowed_schemes:
        return None
    locations = [loc for r in rows for loc in http_locations(r, taxonomy=taxonomy, duplicates=duplicates,
                                                              images=images, root=root,
                                                              match_vertical_names=match_vertical_names)]
    if not locations:
        return None
    from attrpipe.http_images import fetcher_for

    return fetcher_for(images.http).fetch_many(locations, images.max_bytes)


def prepare_listing(
    row: dict, *, taxonomy: Taxonomy, duplicates: set[str], images: ImageSettings, root: str | None,
    fetched: Mapping[str, Future] | None = None, match_vertical_names: bool = False,
    is_unchanged: Callable[[str, str, list[str]], bool] | None = None,
) -> PreparedListing | dict:
    """Validate a catalog row and load its images; a dict return value is a quarantine row.

    ``is_unchanged(listing_id, vertical, image digests)`` (an incremental run): true when the listing's content key
    equals the previous output's; its images are then read and hashed but not decoded (``unchanged``)."""
    checked = _row_sources(row, taxonomy=taxonomy, duplicates=duplicates, images=images,
                           match_vertical_names=match_vertical_names)
    if isinstance(checked, dict):
        return checked
    lid, vertical, sources, extra, inline = checked
    digests: list[str] = []
    unchanged = []

    def skip(data_read: list[bytes]) -> bool:
        digests.extend(image_digest(d) for d in data_read)
        unchanged.append(is_unchanged is not None and is_unchanged(lid, vertical, digests))
        return unchanged[0]

    loaded = _checked_images(row, sources, images=images, root=root, fetched=fetched, skip=skip,
                             each=lambda data: decode_image(data, size=images.size, max_pixels=images.max_pixels,
                                                            max_bytes=images.max_bytes).tobytes())
    if isinstance(loaded, dict):
        return loaded
    pixels, resolved = loaded
    return PreparedListing(
        listing_id=lid,
        vertical=vertical,
        source=row.get("_source", ""),
        pixels=pixels,
        size=images.size,
        image_uris=None if inline else resolved,
        image_bytes=[s[1] for s in sources] if inline else None,
        extra_images=extra,
        vertical_matched=vertical != row.get("vertical"),
        image_digests=digests,
        unchanged=bool(unchanged and unchanged[0]),
    )


def _inspect(data: bytes, images: ImageSettings) -> tuple[str, int, int, int]:
    img, fmt = check_image(data, max_pixels=images.max_pixels, max_bytes=images.max_bytes)
    return fmt, img.width, img.height, len(data)


def inspect_listing(
    row: dict, *, taxonomy: Taxonomy, duplicates: set[str], images: ImageSettings, root: str | None,
    fetched: Mapping[str, Future] | None = None, match_vertical_names: bool = False,
) -> InspectedListing | dict:
    """:func:`prepare_listing`'s checks, in the same order, with each image validated by the same
    :func:`attrpipe.images.check_image` but neither converted nor resized: the row's outcome in pseudo-labeling."""
    checked = _row_sources(row, taxonomy=taxonomy, duplicates=duplicates, images=images,
                           match_vertical_names=match_vertical_names)
    if isinstance(checked, dict):
        return checked
    lid, vertical, sources, extra, _ = checked
    loaded = _checked_images(row, sources, images=images, root=root, fetched=fetched,
                             each=lambda data: _inspect(data, images))
    if isinstance(loaded, dict):
        return loaded
    written = row.get("vertical")
    return InspectedListing(lid, vertical, row.get("_source", ""), loaded[0], extra,
                            None if written == vertical else written)


def asked_attributes(taxonomy: Taxonomy, vertical: str, *, skip_non_inferable: bool, category_question: bool
                     ) -> list[Attribute]:
    v = taxonomy.vertical(vertical)
    attrs = [a for a in v.attributes.values() if a.inferable or not skip_non_inferable]
    if category_question:
        attrs.append(taxonomy.category_attribute())
    return attrs


def listing_requests(listing: PreparedListing, taxonomy: Taxonomy, attributes: list[Attribute]
                     ) -> list[GenerationRequest]:
    """One request per attribute; the images (and so the prompt prefix) are shared across them."""
    display = taxonomy.vertical(listing.vertical).display_name
    imgs = listing.pil_images()
    return [
        GenerationRequest(example_id(listing.listing_id, a.name), build_messages(a, display, len(imgs)), imgs)
        for a in attributes
    ]


def pending_requests(requests: list[GenerationRequest], cached: dict[str, list[str]]) -> list[GenerationRequest]:
    """The requests whose chains are not in ``cached``: the ones an engine must generate."""
    return [r for r in requests if r.request_id not in cached]


def texts_with_cache(requests: list[GenerationRequest], cached: dict[str, list[str]], n: int,
                     generate) -> tuple[list[list[str]], int]:
    """The texts of every request, in order: from ``cached`` (example id -> chain texts of an earlier run with the same
    model, adapter, sampling and seed: the very chains a new generation would sample) where present, from
    ``generate(requests)`` for the others. Returns the texts and how many requests came from the cache."""
    todo = pending_requests(requests, cached)
    generated = dict(zip((r.request_id for r in todo), generate(todo) if todo else [], strict=True))
    out = []
    for r in requests:
        texts = cached.get(r.request_id)
        if texts is None:
            texts = generated[r.request_id]
        elif len(texts) != n:
            raise ValueError(f"cached chains of {r.request_id} are {len(texts)}, expected {n}")
        out.append(list(texts))
    return out, len(requests) - len(todo)


def score_listing(
    listing: PreparedListing,
    taxonomy: Taxonomy,
    attributes: list[Attribute],
    texts: list[list[str]],
    *,
    threshold: float,
    seed: int,
    round_index: int,
    identity: dict,
    truth: dict[str, str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Consensus rows (schemas.CONSENSUS_SCHEMA) and pair rows (schemas.PAIRS_SCHEMA) of one listing.

    ``truth`` (the diagnostic oracle arms): the listing's true labels (attribute -> value, possibly empty); each
    attribute's true label then stands in for the consensus (attrpipe.consensus.oracle_consensus)."""
    display = taxonomy.vertical(listing.vertical).display_name
    consensus_rows, pair_rows = [], []
    for attr, chain_texts in zip(attributes, texts, strict=True):
        ex = example_id(listing.listing_id, attr.name)
        s = score_chains(chain_texts, attr, threshold=threshold, seed=seed, ex_id=ex, oracle=truth is not None,
                         truth=None if truth is None else truth.get(attr.name))
        c = s.consensus
        consensus_rows.append(
            {
                "example_id": ex,
                "listing_id": listing.listing_id,
                "vertical": listing.vertical,
                "attribute": attr.name,
                "consensus": c.value,
                "confidence": c.confidence,
                "n_chains": c.n_chains,
                "n_valid": c.n_valid,
                "tied": c.tied,
                "kept": s.kept,
                "chains": [
                    {"text": p.text, "reasoning": p.reasoning, "answer": p.value, "reason": p.reason}
                    for p in s.chains
                ],
                "image_uris": listing.image_uris,
                "image_bytes": listing.image_bytes,
                "images_dropped": listing.extra_images,
                "round": round_index,
                "model": identity.get("model"),
                "adapter": identity.get("adapter"),
                "adapter_fingerprint": identity.get("adapter_fingerprint"),
            }
        )
        prompt = user_text(attr, display)
        for pair in s.pairs:
            pair_rows.append(
                {
                    "example_id": ex,
                    "listing_id": listing.listing_id,
                    "vertical": listing.vertical,
                    "attribute": attr.name,
                    "prompt": prompt,
                    "image_uris": listing.image_uris,
                    "image_bytes": listing.image_bytes,
                    "chosen": chain_texts[pair.chosen],
                    "rejected": chain_texts[pair.rejected],
                    "chosen_index": pair.chosen,
                    "rejected_index": pair.rejected,
                    "consensus": c.value,
                    "confidence": c.confidence,
                    "round": round_index,
                }
            )
    return consensus_rows, pair_rows


def prediction_rows(consensus_rows: list[dict], *, review_below: float, greedy: bool) -> tuple[list[dict], list[dict]]:
    """Prediction rows (PREDICTIONS_SCHEMA) and review rows (REVIEW_SCHEMA) from a unit's consensus rows."""
    predictions, review = [], []
    for r in consensus_rows:
        value = r["consensus"]
        confidence = None if greedy else float(r["confidence"])
        if value is None:
            reason = "no_answer"
        elif confidence is not None and confidence < review_below:
            reason = "low_confidence"
        else:
            reason = None
        p = {
            "listing_id": r["listing_id"],
            "vertical": r["vertical"],
            "attribute": r["attribute"],
            "value": value,
            "confidence": confidence,
            "n_chains": r["n_chains"],
            "n_valid": r["n_valid"],
            "needs_review": reason is not None,
            "review_reason": reason,
            "model": r["model"],
            "adapter": r["adapter"],
        }
        predictions.append(p)
        if reason is not None:
            votes = Counter(ch["answer"] for ch in r["chains"] if ch["answer"] is not None)
            review.append({**p, "votes": dict(votes), "image_uris": r["image_uris"], "image_bytes": r["image_bytes"]})
    return predictions, review
