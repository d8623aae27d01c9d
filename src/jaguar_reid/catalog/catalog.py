"""``Catalog``: a team's known animals, their photos and embeddings, and every decision made.

>>> catalog = Catalog.create("catalog.db", runs=["runs/lite0"])                 # doctest: +SKIP
>>> catalog.add("photos/", labels="known.csv")                                  # doctest: +SKIP
>>> [r.verdict for r in catalog.identify(["new_photo.jpg"])]                    # doctest: +SKIP
>>> catalog.decide("new_photo.jpg", as_name="Bagheera")                         # doctest: +SKIP

A thin front door: the SQL is in ``repository``, the ranking in ``gallery`` (pure NumPy), the
decision log in ``review``. Every change is one database transaction: photos are checked,
embedded and copied into the content-addressed store first, then the rows are written together,
so an interrupted import leaves the catalogue as it was (a copied photo without its row is
harmless and is reused when the import is run again).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..config import DEFAULT_BACKEND, check_backend
from ..data.split import read_metadata
from ..errors import CatalogError
from ..evaluation.open_set import OpenSetCalibration
from ..inference.embedder import Embedder
from ..runs import as_runs, ensemble_fingerprint
from . import review
from .database import (
    check_version,
    connect,
    create_schema,
    display_name,
    drop_schema,
    is_url,
    upgrade_schema,
)
from .encounters import EncounterRule, batch_name, group_encounters
from .export import export_folders, export_kaggle
from .gallery import Candidate, Gallery, Identification, Identifications, identify, identify_encounters
from .photos import (
    AddReport,
    check_photos,
    crop_box,
    image_row,
    list_photos,
    model_input,
    nothing_readable,
    read_label_map,
)
from .repository import Repository
from .reviewing import Reviewing
from .search import EmbeddingIndex
from .store import ImageStore

__all__ = ["AddReport", "Candidate", "Catalog", "Identification", "Identifications"]


class Catalog(Reviewing):
    """A catalogue at a SQLite path or database URL, with its photo store.

    ``db``: the SQLAlchemy engine; ``backend``: the inference runtime (torch, onnx or auto, as for
    ``Embedder``); ``engine=`` is the old name of ``backend=``.
    """

    def __init__(self, location: str | Path, device: str = "auto", backend: str = DEFAULT_BACKEND,
                 engine: str | None = None):
        self.location, self.name, self.device = location, display_name(location), device
        self.backend = check_backend(_renamed_backend(backend, engine))
        if not is_url(location) and not Path(location).is_file():
            raise CatalogError(f"{location}: no catalogue here (create one with: jaguar-reid catalog create {location} --run RUN)")
        self.db = connect(location)
        check_version(self.db, self.name)
        self.repository = Repository(self.db, self.name)
        self.store = ImageStore(self._store_root())
        self._embedders: dict[str, Embedder] = {}
        self._gallery: Gallery | None = None

    @property
    def engine(self):
        """Deprecated: the database engine is ``db`` (``engine`` named two things)."""
        warnings.warn("Catalog.engine is now Catalog.db", DeprecationWarning, stacklevel=2)
        return self.db

    # ---- creating and opening ----------------------------------------------------------------

    @classmethod
    def create(cls, location: str | Path, runs, store: str | Path | None = None, device: str = "auto",
               backend: str = DEFAULT_BACKEND, calibration: OpenSetCalibration | None = None,
               engine: str | None = None) -> Catalog:
        """A new catalogue bound to trained run(s) (several: an ensemble). Photos go to ``store``
        (default for a SQLite file ``catalog.db``: ``catalog_images/`` beside it; a URL needs one).
        ``calibration``: the open-set calibration (default: the run's own, see ``bind``). A failed
        create leaves nothing behind (no file, no tables)."""
        cls.check_new(location, store, runs)
        stored = str(Path(store).resolve()) if store is not None else f"{Path(location).stem}_images"
        database = connect(location)
        create_schema(database, {"image_store": stored}, display_name(location))
        try:
            catalog = cls(location, device, backend, engine)
            catalog.bind(runs, calibration)
        except BaseException:
            drop_schema(database)
            database.dispose()
            if not is_url(location):
                Path(location).unlink(missing_ok=True)
            raise
        database.dispose()
        return catalog

    @staticmethod
    def check_new(location: str | Path, store: str | Path | None, runs) -> None:
        """One-line errors for a catalogue that cannot be created there (before any work is done)."""
        if not is_url(location) and Path(location).exists():
            raise CatalogError(f"{location}: already exists (open it, or choose another path)")
        if not is_url(location) and not Path(location).resolve().parent.is_dir():
            raise CatalogError(f"{location}: the folder {Path(location).parent} does not exist (create it first)")
        if store is None and is_url(location):
            raise CatalogError(f"{display_name(location)}: a database URL needs --store DIR for the photos")
        if not runs:
            raise CatalogError("a catalogue needs a trained run (--run RUN)")

    @staticmethod
    def upgrade(location: str | Path) -> tuple[int, int]:
        """Bring an older catalogue's schema up to date; returns (old version, new version)."""
        return upgrade_schema(connect(location), display_name(location))

    def _store_root(self) -> Path:
        root = Path(self.repository.info("image_store"))
        return root if root.is_absolute() else Path(self.location).resolve().parent / root

    # ---- models --------------------------------------------------------------------------------

    def bind(self, runs, calibration: OpenSetCalibration | None = None) -> str:
        """Embed every catalogue photo with the run(s) and make them the active model; returns its
        fingerprint. ``calibration`` defaults to the run's own (``jaguar_reid.tasks.calibrate_run``
        writes it; ``jaguar-reid catalog create/bind`` calibrate a run that has none)."""
        runs = as_runs(runs)
        if calibration is None:
            calibration = runs[0].open_set if len(runs) == 1 else None
        if calibration is None:
            raise CatalogError(f"{runs[0].path}: no open-set calibration for this model yet; make one with: "
                               f"jaguar-reid evaluate {runs[0].path}, or use jaguar_reid.tasks.create_catalog / bind_catalog")
        embedder = Embedder.from_runs(runs, device=self.device, cache=False, backend=self.backend)
        rows = self.repository.image_rows()
        vectors = self._embed(embedder, [model_input(self.store, r) for r in rows])
        with self.repository.transaction() as connection:
            model_id = Repository.model_id(connection, embedder.fingerprint, [str(r.path.resolve()) for r in runs],
                                           vectors.shape[1], calibration.to_json())
            Repository.put_embeddings(connection, model_id, [r["id"] for r in rows], vectors, replace=True)
            Repository.set_info(connection, "active_model", embedder.fingerprint)
        self._embedders[embedder.fingerprint] = embedder
        return embedder.fingerprint

    def crop(self, photo, box: tuple[float, float, float, float] | None) -> dict:
        """Set the crop box (left, top, right, bottom, in pixels of the upright photo) around the animal
        in a loose camera-trap frame, or clear it (``None``); the photo is embedded again from the
        crop under every bound model, in one transaction. Returns the photo's row."""
        image = self.find_image(photo)
        columns = crop_box(image, box)
        image.update(columns)
        vectors = {model_id: self._embed(self._embedder_for(model_id), [model_input(self.store, image)])
                   for model_id in self.repository.model_ids()}
        with self.repository.transaction() as connection:
            Repository.set_crop(connection, image["id"], columns)
            for model_id, vector in vectors.items():
                Repository.put_embeddings(connection, model_id, [image["id"]], vector, replace=True)
        return image

    @staticmethod
    def _embed(embedder: Embedder, inputs: list) -> np.ndarray:
        return embedder.embed(inputs) if inputs else np.zeros((0, embedder.dim), np.float32)

    @property
    def calibration(self) -> OpenSetCalibration:
        """The active model's open-set calibration (threshold and probabilities)."""
        return OpenSetCalibration.from_json(json.loads(self.repository.active_model()["open_set"]))

    @property
    def embedder(self) -> Embedder:
        """The active model's ``Embedder``, after checking its runs still hold the weights the catalogue was embedded with."""
        return self._embedder_for(self.repository.active_model()["id"])

    def _embedder_for(self, model_id: int) -> Embedder:
        """The embedder of a bound model (kept once built), refused if its runs changed since."""
        model = next(m for m in self.repository.model_rows() if m["id"] == model_id)
        if model["fingerprint"] not in self._embedders:
            runs = as_runs(json.loads(model["runs"]))
            found = ensemble_fingerprint(runs)
            if found != model["fingerprint"]:
                raise CatalogError(
                    f"{self.name}: the catalogue's photos were embedded by model {model['fingerprint']}, but "
                    f"{', '.join(map(str, (r.path for r in runs)))} now holds model {found}; bind it again with: "
                    f"jaguar-reid catalog bind {self.name} --run RUN")
            self._embedders[found] = Embedder.from_runs(runs, device=self.device, cache=False, backend=self.backend)
        return self._embedders[model["fingerprint"]]

    # ---- adding photos -----------------------------------------------------------------------------

    def add(self, photos, labels: str | Path | None = None, metadata: str | Path | None = None,
            who: str | None = None, names: list[str] | None = None, strict: bool = False,
            encounter_by: str | EncounterRule | None = None) -> AddReport:
        """Add a folder (searched recursively) or list of photos: those named in ``labels``
        (filename,ground_truth) as known individuals, the rest queued for review. ``metadata``
        (filename plus side/date/location and any other columns) is stored with them; without it
        the date and place come from the photos' EXIF. Files that are not readable photos and
        duplicates (same content) are skipped and listed in ``report.skipped``; ``strict`` refuses
        the whole import at the first unreadable file instead. ``names``: the photos' original
        names when the files are not under them (uploads). ``encounter_by`` (``folder``,
        ``time:MINUTES``, ``column:NAME``; see ``catalog.encounters``) groups the added photos into
        encounters; without it each photo is its own."""
        rule = EncounterRule.parse(encounter_by) if isinstance(encounter_by, str) else encounter_by
        listed, paths = list_photos(photos)
        names = listed if names is None else [Path(n).name for n in names]
        label_of = read_label_map(labels, names, photos) if labels is not None else {}
        meta_of = ({row["filename"]: row for row in read_metadata(metadata).to_dict("records")}
                   if metadata is not None else {})
        checked, skipped = check_photos(names, paths, strict)
        if not checked:
            raise nothing_readable(photos if isinstance(photos, (str, Path)) else "the photos given", skipped)
        report, fresh = AddReport(skipped=skipped), []
        existing, first_of = self.repository.names_by_hash([c.sha256 for _, c in checked]), {}
        for name, photo in checked:
            if photo.sha256 in existing or photo.sha256 in first_of:
                report.duplicates.append((name, existing.get(photo.sha256) or first_of[photo.sha256]))
                report.skipped.append({"file": name, "reason": f"duplicate of {report.duplicates[-1][1]}"})
                continue
            first_of[photo.sha256] = name
            fresh.append((name, photo))
        grouping = group_encounters(rule, [n for n, _ in fresh], [p.taken_at for _, p in fresh], meta_of, batch_name(),
                                    str(metadata) if metadata is not None else None)
        report.notes = grouping.notes
        report.encounters = len({e for e in grouping.encounters if e is not None}) + grouping.encounters.count(None)
        vectors = {model_id: self._embed(self._embedder_for(model_id), [p.path for _, p in fresh])
                   for model_id in self.repository.model_ids()}
        stored = [self.store.put(photo) for _, photo in fresh]
        with self.repository.transaction() as connection:
            ids, report.new_individuals = Repository.individual_ids(connection, {label_of[n] for n, _ in fresh if n in label_of})
            image_ids = [Repository.insert_image(connection, image_row(name, photo, stored_name, ids.get(label_of.get(name)),
                                                                       meta_of.get(name, {}), who or review.default_who(), encounter))
                         for (name, photo), stored_name, encounter in zip(fresh, stored, grouping.encounters)]
            for model_id, model_vectors in vectors.items():
                Repository.put_embeddings(connection, model_id, image_ids, model_vectors)
        report.added = len(fresh)
        report.labelled = sum(name in label_of for name, _ in fresh)
        report.queued = report.added - report.labelled
        return report

    # ---- identifying -------------------------------------------------------------------------------

    def gallery(self) -> Gallery:
        """Identified photos under the active model, read once and again only after a change
        (by this or any other process: the catalogue's change counter is the key)."""
        model = self.repository.active_model()
        key = (model["id"], self.repository.changes())
        if self._gallery is None or self._gallery.key != key:
            rows = self.repository.gallery_rows(model["id"])
            vectors = (np.stack([np.frombuffer(r.vector, dtype=np.float32) for r in rows]) if rows
                       else np.zeros((0, model["dim"]), np.float32))
            self._gallery = Gallery(EmbeddingIndex(vectors), np.array([r.name for r in rows], dtype=object),
                                    [{"sha256": r.sha256, "original_name": r.original_name,
                                      "path": str(self.store.path(r.stored_path))} for r in rows], key)
        return self._gallery

    def identify(self, photos, top_k: int = 5, photos_per_individual: int = 3, strict: bool = False) -> Identifications:
        """Top-k individuals for each photo (paths, or a folder searched recursively), with score,
        calibrated probability, best-matching catalogue photos and the verdict (which does not
        depend on ``top_k``). A photo already in the catalogue is not matched against itself.
        Unreadable files are skipped and listed in ``.skipped`` (``strict``: refused instead)."""
        gallery, names, checked, queries, skipped = self._queries(photos, top_k, strict)
        calibration = self.calibration
        rankings = identify(gallery, queries, calibration, top_k, photos_per_individual, [c.sha256 for c in checked])
        return Identifications([Identification(name, photo.sha256, verdict, individual, calibration.threshold, candidates)
                                for name, photo, (verdict, individual, candidates) in zip(names, checked, rankings)], skipped)

    def identify_encounters(self, photos, encounter_by: str | EncounterRule, metadata: str | Path | None = None,
                            top_k: int = 5, photos_per_individual: int = 3, strict: bool = False) -> Identifications:
        """One answer per encounter (photos grouped as ``add``'s ``encounter_by`` does): its photos'
        evidence pooled for each individual, one verdict and one probability from the encounter-level
        calibration; ``Identification.photo`` names the encounter and ``.photos`` its photos."""
        rule = EncounterRule.parse(encounter_by) if isinstance(encounter_by, str) else encounter_by
        calibration = self.calibration.for_encounters()
        if calibration is None:
            raise CatalogError(f"{self.name}: the model's calibration has no encounter level; calibrate the run again "
                               "(jaguar-reid evaluate RUN; its split needs groups: sightings or the automatic ones), "
                               f"then: jaguar-reid catalog bind {self.name} --run RUN")
        gallery, names, checked, queries, skipped = self._queries(photos, top_k, strict)
        meta_of = {row["filename"]: row for row in read_metadata(metadata).to_dict("records")} if metadata is not None else {}
        grouping = group_encounters(rule, names, [c.taken_at for c in checked], meta_of, "query",
                                    str(metadata) if metadata is not None else None)
        encounters = [e if e is not None else f"photo:{name}" for e, name in zip(grouping.encounters, names)]
        answers = identify_encounters(gallery, queries, encounters, calibration, top_k, photos_per_individual,
                                      [c.sha256 for c in checked])
        return Identifications([Identification(str(encounter).removeprefix("query/"), None, verdict, individual,
                                               calibration.threshold, candidates, [names[i] for i in members])
                                for encounter, members, verdict, individual, candidates in answers], skipped, grouping.notes)

    def _queries(self, photos, top_k: int, strict: bool):
        """The gallery, and the readable photos among ``photos``: names, checked files, vectors (Q, D), skipped files."""
        if top_k < 1:
            raise CatalogError(f"--top-k must be at least 1, got {top_k}")
        names, paths = list_photos(photos) if isinstance(photos, (str, Path)) else ([str(p) for p in photos], [Path(p) for p in photos])
        gallery = self.gallery()
        if not len(gallery):
            raise CatalogError(f"{self.name}: no identified photos yet (add some with: jaguar-reid catalog add {self.name} --images DIR --labels known.csv)")
        readable, skipped = check_photos(names, paths, strict)
        if not readable:
            raise nothing_readable(photos if isinstance(photos, (str, Path)) else "the photos given", skipped)
        names, checked = [n for n, _ in readable], [c for _, c in readable]
        stored = self.repository.stored_vectors(gallery.key[0], [c.sha256 for c in checked])
        missing = [c.path for c in checked if c.sha256 not in stored]
        fresh = iter(self.embedder.embed(missing)) if missing else iter(())
        queries = np.stack([stored[c.sha256] if c.sha256 in stored else next(fresh) for c in checked])
        return gallery, names, checked, queries, skipped

    # ---- reading out -------------------------------------------------------------------------------

    def export(self, out: str | Path, layout: str = "kaggle") -> Path:
        """Identified photos, ``kaggle`` (retrain on them): OUT/train.csv (filename,ground_truth),
        OUT/train/<photo> and OUT/metadata.csv (filename, original name, side, date, location,
        extras); or ``folders`` (for people): a folder per individual, individuals.csv and photos.csv."""
        if layout not in ("kaggle", "folders"):
            raise CatalogError(f"export layout must be kaggle or folders, got {layout!r}")
        rows = self.repository.known_photos()
        if not rows:
            raise CatalogError(f"{self.name}: no identified photos to export")
        if layout == "folders":
            return export_folders(rows, self.store, Path(out), self.repository.latest_decisions())
        return export_kaggle(rows, self.store, Path(out))

    def stats(self) -> dict:
        """Counts: individuals (with identified photos), photos by status, photos per individual, models, decisions."""
        return self.repository.stats(self.store.root)



def _renamed_backend(backend: str, engine: str | None) -> str:
    if engine is None:
        return backend
    warnings.warn("Catalog(engine=...) is now Catalog(backend=...)", DeprecationWarning, stacklevel=3)
    return engine
