"""Index of a labelled image collection (paths + labels + hierarchy), built without decoding images.

Two sources:

- a **class-folder tree**: every folder that directly holds image files is a class; its ancestor
  folders (relative to the root) are its hierarchy levels, as in Million-AID's
  ``level1/level2/level3/*.jpg`` layout (leaves may sit at different depths);
- a **CSV manifest** with columns ``path,label`` (header optional; paths relative to the CSV's folder;
  a label such as ``water_area/lake`` also gives the hierarchy).

Scanning uses ``os.scandir`` and reads directory entries only (no per-file ``stat``: entry types
come with the listing), which is what makes a first index of a million files faster than
torchvision's ``ImageFolder``. The index is cached (``.npz``) and reused while the mtimes of the
folders it saw are unchanged; ``rescan=True`` forces a new scan.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longtail.distribution import ClassDistribution

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_EXTENSIONS = tuple(IMAGE_EXTENSIONS)
CACHE_VERSION = 1

Progress = Callable[[int, int, int], None]


@dataclass
class ImageIndex:
    """Columnar index: ``paths[i]`` (relative to ``root``) has class ``labels[i]``.

    ``class_dirs[j]`` is class j's folder relative to the root (its parts give the hierarchy);
    ``sizes[i]`` is the file size in bytes, -1 until :meth:`file_sizes` has read it.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    class_dirs: list[str]
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_dirs)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Leaf folder names, or the full relative folder where a leaf name repeats."""
        leaves = [d.rsplit("/", 1)[-1] for d in self.class_dirs]
        return tuple(
            leaf if leaves.count(leaf) == 1 else d
            for leaf, d in zip(leaves, self.class_dirs, strict=True)
        )

    @property
    def hierarchy(self) -> tuple[tuple[str, ...], ...] | None:
        """Ancestor folder names of each class, from the top (``None`` when every class is top-level)."""
        parts = [tuple(d.split("/")[:-1]) for d in self.class_dirs]
        return tuple(parts) if any(parts) else None

    def distribution(self) -> ClassDistribution:
        return ClassDistribution.from_labels(
            self.labels, self.num_classes, self.class_names, self.hierarchy
        )

    def level_labels(self, level: int) -> tuple[np.ndarray, list[str]]:
        """Labels and class names at hierarchy ``level`` (1 = top folders; deepest = the classes)."""
        dist = self.distribution()
        names = dist.level_names(level)
        uniq = list(dict.fromkeys(names))
        mapping = np.array([uniq.index(n) for n in names], dtype=np.int64)
        return mapping[self.labels], uniq

    def filepath(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def file_sizes(self) -> np.ndarray:
        """File sizes in bytes, read once (a directory listing per class folder) and then kept;
        -1 for a file that has gone."""
        if self.sizes.size and self.sizes.min() >= 0:
            return self.sizes
        sizes: dict[str, int] = {}
        for folder in {p.rpartition("/")[0] for p in self.paths}:
            try:
                with os.scandir(os.path.join(self.root, folder)) as it:
                    prefix = f"{folder}/" if folder else ""
                    sizes.update((prefix + e.name, e.stat().st_size) for e in it if e.is_file())
            except OSError:
                continue
        self.sizes = np.fromiter(
            (sizes.get(p, -1) for p in self.paths), dtype=np.int64, count=len(self.paths)
        )
        return self.sizes

    # ------------------------------------------------------------------ cache files
    def save(self, path: str | Path, fingerprint: dict[str, int] | None = None) -> None:
        """Write the index atomically (temp file + rename) as a compact ``.npz``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fp = fingerprint or {}
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                version=np.int64(CACHE_VERSION),
                root=np.array(str(self.root)),
                paths=np.frombuffer("\n".join(self.paths).encode(), dtype=np.uint8),
                labels=self.labels.astype(np.int32),
                class_dirs=np.array(self.class_dirs, dtype=str),
                sizes=self.sizes,
                fp_dirs=np.array(list(fp), dtype=str),
                fp_mtimes=np.array(list(fp.values()), dtype=np.int64),
            )
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | Path) -> tuple[ImageIndex, dict[str, int]]:
        """Read a cache file written by :meth:`save`; returns the index and its folder fingerprint."""
        with np.load(path) as z:
            if int(z["version"]) != CACHE_VERSION:
                raise ValueError(f"{path} is an index cache of another version; rescan")
            blob = z["paths"].tobytes().decode()
            index = ImageIndex(
                root=Path(str(z["root"])),
                paths=blob.split("\n") if blob else [],
                labels=z["labels"].astype(np.int64),
                class_dirs=[str(d) for d in z["class_dirs"]],
                sizes=z["sizes"],
            )
            fp = dict(zip((str(d) for d in z["fp_dirs"]), z["fp_mtimes"].tolist(), strict=True))
        return index, fp


# ---------------------------------------------------------------------- folder trees
def _scan_subtree(root: str, rel: str) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
    """Walk one subtree; returns (class folder, sorted image file names) pairs and folder mtimes.
    Reads directory entries only (their type comes with the listing): no per-file stat."""
    classes: list[tuple[str, list[str]]] = []
    mtimes: dict[str, int] = {}
    stack = [rel]
    while stack:
        cur = stack.pop()
        full = os.path.join(root, cur) if cur else root
        names: list[str] = []
        subdirs: list[str] = []
        with os.scandir(full) as it:
            for entry in it:
                name = entry.name
                if name[0] == ".":
                    continue
                if entry.is_dir():
                    subdirs.append(f"{cur}/{name}" if cur else name)
                elif name.lower().endswith(_EXTENSIONS):
                    names.append(name)
        mtimes[cur] = os.stat(full).st_mtime_ns
        if names and cur:
            names.sort()
            classes.append((cur, names))
        stack.extend(sorted(subdirs, reverse=True))
    return classes, mtimes


def scan_folder(
    root: str | Path, progress: Progress | None = None, workers: int | None = None
) -> tuple[ImageIndex, dict[str, int]]:
    """Scan a class-folder tree; returns the index and the mtimes of every folder seen.

    Top-level folders are walked by ``workers`` threads (default: one per core, at most 8), which
    overlap the waits of a cold or network file system. ``progress(done, total, files)`` is called
    as each top-level folder finishes. File sizes are not read here (see
    :meth:`ImageIndex.file_sizes`)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist or is not a folder")
    with os.scandir(root) as it:
        entries = [e for e in it if not e.name.startswith(".")]
    tops = sorted(e.name for e in entries if e.is_dir())
    loose = [e.name for e in entries if e.is_file() and e.name.lower().endswith(_EXTENSIONS)]
    if loose and not tops:
        raise ValueError(
            f"{root} holds {len(loose)} images but no class folders; put each class's images in a "
            "sub-folder named after the class (root/CLASS/*.jpg), or pass a CSV manifest (path,label)"
        )
    classes: list[tuple[str, list[str]]] = []
    mtimes = {"": os.stat(root).st_mtime_ns}
    workers = workers or min(8, len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tops)))) as pool:
        futures = [pool.submit(_scan_subtree, str(root), top) for top in tops]
        for done, future in enumerate(as_completed(futures), 1):
            part, m = future.result()
            classes += part
            mtimes.update(m)
            if progress is not None:
                progress(done, len(tops), sum(len(names) for _, names in classes))
    if not classes:
        raise ValueError(
            f"no images found under {root} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "expected root/CLASS/*.jpg or nested root/LEVEL1/.../CLASS/*.jpg"
        )
    classes.sort(key=lambda c: c[0])
    counts = np.array([len(names) for _, names in classes])
    paths = [f"{d}/{n}" for d, names in classes for n in names]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), counts)
    sizes = np.full(len(paths), -1, dtype=np.int64)
    return ImageIndex(root, paths, labels, [d for d, _ in classes], sizes), mtimes


def read_manifest(csv_path: str | Path) -> ImageIndex:
    """Index from a CSV manifest with rows ``path,label`` (header row optional)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest {csv_path} does not exist")
    with open(csv_path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise ValueError(f"manifest {csv_path} has no rows; expected lines of 'path,label'")
    bad = [i + 1 for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad:
        raise ValueError(
            f"manifest {csv_path}: rows {bad[:5]} lack a path or a label; expected 'path,label'"
        )
    labels_str = [r[1].strip().strip("/") for r in rows]
    class_dirs = sorted(set(labels_str))
    lookup = {c: i for i, c in enumerate(class_dirs)}
    labels = np.array([lookup[s] for s in labels_str], dtype=np.int64)
    paths = [r[0].strip() for r in rows]
    return ImageIndex(
        csv_path.parent, paths, labels, class_dirs, np.full(len(paths), -1, dtype=np.int64)
    )


# ---------------------------------------------------------------------- cached entry point
def default_cache_dir() -> Path:
    return Path(os.environ.get("LONGTAIL_CACHE", Path.home() / ".cache" / "longtail"))


def _fingerprint_unchanged(root: Path, fp: dict[str, int]) -> bool:
    try:
        return bool(fp) and all(
            os.stat(root / d if d else root).st_mtime_ns == m for d, m in fp.items()
        )
    except OSError:
        return False


def build_index(
    source: str | Path,
    *,
    cache_dir: str | Path | None = None,
    rescan: bool = False,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> ImageIndex:
    """Index a class-folder tree or CSV manifest, reusing a cached index when the tree is unchanged.

    The cache file lives in ``cache_dir`` (default ``$LONGTAIL_CACHE`` or ``~/.cache/longtail``),
    named after the absolute path of ``source``. A cache that cannot be written is skipped.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(
            f"{source} does not exist; pass a folder of class sub-folders of images or a CSV manifest"
        )
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise ValueError(
                f"{source} is a file but not a .csv manifest; pass a folder or a CSV of path,label"
            )
        return read_manifest(source)
    root = source.resolve()
    cache = (
        Path(cache_dir or default_cache_dir())
        / f"index-{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.npz"
    )
    if use_cache and not rescan and cache.exists():
        try:
            index, fp = ImageIndex.load(cache)
            if index.root == root and _fingerprint_unchanged(root, fp):
                return index
        except (OSError, ValueError, KeyError):
            pass
    index, fp = scan_folder(root, progress=progress)
    index.root = root
    if use_cache:
        try:
            index.save(cache, fp)
        except OSError:
            pass
    return index
