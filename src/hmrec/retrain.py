"""`hmrec retrain`: the service's live events into the training data, a new version trained and registered, then
promoted only when it scores no worse than the champion on the same held-out window (the gate)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hmrec.evaluation.metrics import ap_from_hits, hit_matrix
from hmrec.pipeline import PipelineConfig, held_out_query, load_train_data, run_pipeline
from hmrec.scale.engine import Engine, LocalEngine
from hmrec.scoring import final_on_store
from hmrec.store.tables import ARTICLES, CUSTOMERS, Store

log = logging.getLogger(__name__)

TOLERANCE = 0.001  # MAP@12, absolute: a stated default, not a measured noise level (set it per dataset: --tolerance)
CHALLENGER = "challenger"
RAW_PREFIX = ".retrain-raw-"  # the training data with the live events, under the workdir while the retrain runs


@dataclass(frozen=True)
class Scores:
    """One version's MAP@12 on the held-out window: over every buyer's purchases, and over the purchases no
    impression of the service led to (the champion's own answers caused part of the window)."""

    map12: float
    map12_unattributed: float
    buyers: int
    buyers_unattributed: int


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def gate(candidate: Scores, champion: Scores, tolerance: float = TOLERANCE) -> Decision:
    """Promote when the candidate's MAP@12 is at least the champion's minus `tolerance`, on all held-out purchases
    and on those not attributed to an impression; otherwise say where it fell short."""
    checks = [("all held-out purchases", candidate.map12, champion.map12),
              ("purchases not attributed to an impression", candidate.map12_unattributed,
               champion.map12_unattributed)]
    short = [f"MAP@12 on {what} {new:.4f} < the champion's {old:.4f} - {tolerance:g}"
             for what, new, old in checks if new < old - tolerance]
    if short:
        return Decision(False, "; ".join(short))
    return Decision(True, "MAP@12 " + ", ".join(f"on {what} {new:.4f} vs the champion's {old:.4f}"
                                                 for what, new, old in checks) + f" (tolerance {tolerance:g})")


def held_out_scores(top: np.ndarray, relevant: list[np.ndarray], attributed: list[np.ndarray]) -> Scores:
    """Scores from a version's top 12 per held-out buyer (article_idx, -1 padded), what each bought and, of that, what
    was attributed to an impression; a buyer all of whose purchases were attributed counts in the first mean only."""
    unattributed = [np.setdiff1d(bought, credited) for bought, credited in zip(relevant, attributed, strict=True)]
    means = []
    for wanted in (relevant, unattributed):
        hits, counts = hit_matrix(top, wanted, 12)
        ap = ap_from_hits(hits, counts, 12)
        ap = ap[counts > 0]
        means.append((float(ap.mean()) if ap.size else 0.0, int(ap.size)))
    return Scores(means[0][0], means[1][0], means[0][1], means[1][1])


def score_versions(workdir: Path, versions: dict[str, int],
                   attributed: Collection[tuple[str, int]] = ()) -> dict[str, Scores]:
    """Each version's Scores on the latest held-out window of the workdir's store, every bundle asked through its own
    id maps (a customer it does not know as a new one) by the same code. `attributed`: (customer_id, article_id)
    pairs the service credits to one of its impressions (the loop's attribution; empty: none)."""
    from hmrec.registry.versions import Registry

    store = Store(workdir / "store")
    query, relevant = held_out_query(store, load_train_data(store))
    credited = _attributed_rows(store, query.customers["customer_idx"].to_numpy(), attributed)
    registry = Registry.for_workdir(workdir)
    scores = {}
    for label, version in versions.items():
        top = final_on_store(store, registry.load(version)).recommend(query, 12).items
        scores[label] = held_out_scores(top, relevant, credited)
        log.info("version %d (%s): %s", version, label, scores[label])
    return scores


def _attributed_rows(store: Store, customer_idx: np.ndarray, pairs: Collection[tuple[str, int]]) -> list[np.ndarray]:
    """Per held-out buyer (in query order), the store's article_idx of the attributed pairs."""
    import polars as pl

    out = [np.empty(0, dtype=np.int32) for _ in customer_idx]
    if not pairs:
        return out
    frame = pl.DataFrame({"customer_id": [c for c, _ in pairs], "article_id": [int(a) for _, a in pairs]})
    frame = (frame.join(store.read(CUSTOMERS).select("customer_idx", "customer_id"), on="customer_id")
             .join(store.read(ARTICLES).select("article_idx", "article_id"), on="article_id"))
    row_of = {int(c): row for row, c in enumerate(customer_idx)}
    for c, a in frame.select("customer_idx", "article_idx").iter_rows():
        if c in row_of:
            out[row_of[c]] = np.append(out[row_of[c]], np.int32(a))
    return out


@dataclass
class RetrainConfig:
    workdir: Path
    raw: Path
    test_days: int = 7
    tolerance: float = TOLERANCE
    challenger: bool = True  # a version the gate refuses becomes the `challenger` alias (False: left unaliased)
    precompute: str = "active"
    engine: Engine = field(default_factory=LocalEngine)
    horizon_days: int | None = None  # the pipeline's settings (PipelineConfig): the same ones as the champion's
    label_windows: int | None = None
    search_fits: int = 15
    attributed: Collection[tuple[str, int]] = ()  # (customer_id, article_id) credited to an impression


@dataclass(frozen=True)
class RetrainResult:
    version: int
    champion: int | None  # the champion when the retrain started
    promoted: bool
    alias: str | None  # the alias the new version got: champion, challenger or None
    reason: str
    live_events: int
    scores: dict[str, Scores]


def retrain(config: RetrainConfig, events_target: str | Path) -> RetrainResult:
    """Under the workdir lock: train on `config.raw` plus the live events of `events_target`, register the new
    version, score it and the champion, promote or alias it by the gate; every figure and the decision go to MLflow."""
    from hmrec.registry.versions import Registry
    from hmrec.registry.writer import workdir_writer

    workdir = Path(config.workdir)
    with workdir_writer(workdir):  # kept if the caller (--wait) holds it already
        champion = Registry.for_workdir(workdir).champion_version() if _has_registry(workdir) else None
        with tempfile.TemporaryDirectory(prefix=RAW_PREFIX, dir=_made(workdir)) as folder:
            raw, events = with_live_events(config.raw, events_target, Path(folder))
            run_pipeline(PipelineConfig(workdir=workdir, raw=raw, test_days=config.test_days, promote=False,
                                        engine=config.engine, precompute=config.precompute,
                                        horizon_days=config.horizon_days, label_windows=config.label_windows,
                                        search_fits=config.search_fits))
        version = max(info.version for info in Registry.for_workdir(workdir).versions())  # the lock kept others out
        if not config.attributed:
            config = replace(config, attributed=attributed_purchases(events_target))
        return judge(config, version, champion, events)


def judge(config: RetrainConfig, version: int, champion: int | None, live_events: int = 0) -> RetrainResult:
    """The gate on a registered `version` against `champion` (the champion when the retrain began): score both,
    promote or make it the challenger (or leave it), and record the decision and every figure in an MLflow run."""
    from hmrec.registry.tracking import Tracker
    from hmrec.registry.versions import Registry

    registry = Registry.for_workdir(config.workdir)
    scores = {} if champion is None else score_versions(
        config.workdir, {"candidate": version, "champion": champion}, config.attributed)
    decision = Decision(True, "no champion to compare with") if champion is None else \
        gate(scores["candidate"], scores["champion"], config.tolerance)
    alias = "champion" if decision.promote else CHALLENGER if config.challenger else None
    if decision.promote:
        registry.promote(version, expected=champion)
    elif alias:
        registry.set_alias(alias, version)
    log.info("version %d %s: %s", version, "promoted" if decision.promote else "not promoted", decision.reason)
    result = RetrainResult(version, champion, decision.promote, alias, decision.reason, live_events, scores)
    with Tracker.start(config.workdir, run_name=f"retrain-v{version}", params=_params(config, result)) as tracker:
        tracker.log_metrics({label: asdict(s) for label, s in scores.items()})
        tracker.set_tags({"retrain.decision": "promoted" if decision.promote else "refused",
                          "retrain.reason": decision.reason[:5000], "retrain.alias": alias or "none"})
    return result


def attributed_purchases(events_target: str | Path) -> set[tuple[str, int]]:
    """(customer_id, article_id) of the stored purchases credited to an impression (feedback/attribution.py): the
    part of the window the champion's own answers may have caused. Empty when the store cannot be read (logged)."""
    from hmrec.feedback.attribution import attribute
    from hmrec.serving.events import EventStoreUnavailable, open_event_store, sqlite_path

    path = sqlite_path(events_target)
    if path is not None and not path.is_file():
        return set()
    store = open_event_store(events_target)
    try:
        credited = attribute(store.impressions(), store.sales())
    except EventStoreUnavailable as error:
        log.warning("no attribution (every held-out purchase counts as not attributed): %s", error)
        return set()
    finally:
        store.close()
    return {(a.sale.customer_id, a.sale.article_id) for a in credited if a.impression is not None}


def with_live_events(raw: Path, events_target: str | Path, folder: Path) -> tuple[Path, int]:
    """`raw` itself when the service stored no event; otherwise a raw folder in `folder` whose transactions are the
    raw ones followed by the exported events (`hmrec events export`), the other files linked, not copied."""
    from hmrec.pipeline import check_raw_inputs
    from hmrec.raw.read import RawDataError
    from hmrec.raw.schema import RAW_FILES, TRANSACTIONS_FILE
    from hmrec.serving.events import export_csv

    check_raw_inputs(raw)
    exported = folder / "events.csv"
    n = export_csv(events_target, exported)
    if n == 0:
        return Path(raw), 0
    out = folder / "raw"
    out.mkdir()
    for name in RAW_FILES:
        if name != TRANSACTIONS_FILE:
            (out / name).symlink_to(Path(raw, name).absolute())
    with Path(raw, TRANSACTIONS_FILE).open("rb") as source, (out / TRANSACTIONS_FILE).open("wb") as target:
        header = source.readline()
        with exported.open("rb") as events:
            ours = events.readline()
            if header.lstrip(b"\xef\xbb\xbf").strip() != ours.strip():
                raise RawDataError(f"{Path(raw, TRANSACTIONS_FILE)} has the columns {header.strip()[:200]!r}, the "
                                   f"exported events {ours.strip()!r}: the live events cannot be appended; write the "
                                   "file with the standard columns in that order")
            target.write(header)
            shutil.copyfileobj(source, target, 1 << 20)
            if not _ends_with_newline(Path(raw, TRANSACTIONS_FILE)):  # a last line without its newline
                target.write(b"\n")
            shutil.copyfileobj(events, target, 1 << 20)
    log.info("training on %s with %d live events appended", raw, n)
    return out, n


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) in (b"\n", b"\r")


def _has_registry(workdir: Path) -> bool:
    from hmrec.registry.location import missing_registry

    return missing_registry(workdir) is None


def _made(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _params(config: RetrainConfig, result: RetrainResult) -> dict:
    return {"raw": str(config.raw), "tolerance": config.tolerance, "test_days": config.test_days,
            "version": result.version, "champion_version": result.champion, "live_events": result.live_events,
            "attributed_pairs": len(config.attributed)}
