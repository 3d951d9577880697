"""Index of a labelled image collection (paths + labels + hierarchy), built without decoding images.

Two sources:

- a **class-folder tree**: every folder that directly holds image files is a class; its ancestor
  folders (relative to the root) are its hierarchy levels, as in Million-AID's
  ``level1/level2/level3/*.jpg`` layout (leaves may sit at different depths);
- a **CSV manifest** with columns ``path,label`` (header optional; paths relative to the CSV's folder;
  a label such as ``water_area/lake`` also gives the hierarchy).

Scanning uses ``os.scandir`` and reads directory entries only (no per-file ``stat``: entry types
come with the listing), which is what makes a first index of a million files faster than
torchvision's ``ImageFolder``. Only regular files are images (a FIFO or device named ``x.jpg`` is
not), and a folder holding longtail's output marker (``.longtail-output``) is skipped. Folder and
file symlinks are followed, except into a folder already on the current path (a symlink loop)
and out of the data folder (refused unless ``allow_outside=True``). Every file is known by its
identity (device and inode, which the listing gives): one file reached by two paths (a symlinked
class folder, a hard link, a manifest row spelt two ways) would have two labels, or sit in two
splits, so it is refused, naming both paths. The index is cached (``.npz``; paths stored as
NUL-terminated bytes, so
any legal file name, newlines and non-UTF-8 bytes included, round-trips) and reused while the mtimes
of the folders it saw are unchanged; ``rescan=True`` forces a new scan.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longtail._io import OUTPUT_MARKER, atomic_write
from longtail._text import terminal_text
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError, MissingInputError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_EXTENSIONS = tuple(IMAGE_EXTENSIONS)
CACHE_VERSION = 5
PATH_COLUMNS = ("path", "file", "filename", "filepath", "file_path", "image", "image_path")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "target")


def available_cpus() -> int:
    """CPU cores this process may use (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _pack(strings: list[str]) -> np.ndarray:
    """Strings as one byte blob, each ended by a NUL (which no file name can hold), in the
    file-system encoding so that undecodable bytes kept by ``os.fsdecode`` survive."""
    text = "\0".join(strings) + "\0" if strings else ""
    return np.frombuffer(os.fsencode(text), dtype=np.uint8)


def _unpack(blob: np.ndarray) -> list[str]:
    return os.fsdecode(blob.tobytes()).split("\0")[:-1]


ScanProgress = Callable[[int, int, int], None]
"""Called as a scan goes: (top-level folders done, top-level folders in all, images found)."""
Stamps = dict[str, tuple[int, int, int]]
"""Folder (relative to the root) -> its (modification time, change time, inode): the change time
and inode cannot be set back, so a folder rebuilt with its old times is noticed."""


def folder_stamp(info: os.stat_result) -> tuple[int, int, int]:
    """A folder's (modification time ns, change time ns, inode)."""
    return info.st_mtime_ns, info.st_ctime_ns, info.st_ino


@dataclass
class ImageIndex:
    """Columnar index: ``paths[i]`` (relative to ``root``) has class ``labels[i]``.

    ``class_dirs[j]`` is class j's folder relative to the root (its parts give the hierarchy);
    ``sizes[i]`` is the file size in bytes, -1 until :meth:`file_sizes` has read it;
    ``files[i]`` is the file's identity (device, inode), (-1, -1) where it is not known;
    ``mtimes[i]`` its modification time in ns once :meth:`file_stats` has read it.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    class_dirs: list[str]
    sizes: np.ndarray
    files: np.ndarray | None = None
    mtimes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.files is None:
            self.files = np.full((len(self.paths), 2), -1, dtype=np.int64)

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
        """File sizes in bytes (see :meth:`file_stats`)."""
        return self.file_stats()[0]

    def file_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Each file's size in bytes and modification time in ns, as rsync's quick check sees
        them (-1 for a file that has gone): a directory listing and a ``stat`` per file, folders
        read by one thread per core (at most 8), once, then kept. A file rewritten in place
        changes one of them."""
        if self.mtimes is not None and (not self.sizes.size or self.sizes.min() >= 0):
            return self.sizes, self.mtimes
        rows: dict[str, list[int]] = {}
        for i, path in enumerate(self.paths):
            rows.setdefault(path.rpartition("/")[0], []).append(i)
        both = np.full((len(self.paths), 2), -1, dtype=np.int64)
        workers = max(1, min(8, available_cpus(), len(rows)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for folder, found in zip(rows, pool.map(self._folder_stats, rows), strict=True):
                picked = rows[folder]
                names = [self.paths[i].rpartition("/")[2] for i in picked]
                both[picked] = [found.get(n, (-1, -1)) for n in names]
        self.sizes, self.mtimes = both[:, 0].copy(), both[:, 1].copy()
        return self.sizes, self.mtimes

    def _folder_stats(self, folder: str) -> dict[str, tuple[int, int]]:
        """File name -> (size, mtime ns) of the regular files in ``folder`` (empty if unreadable)."""
        found: dict[str, tuple[int, int]] = {}
        try:
            with os.scandir(os.path.join(self.root, folder)) as it:
                for e in it:
                    if e.is_file():
                        info = e.stat()
                        found[e.name] = (info.st_size, info.st_mtime_ns)
        except OSError:
            pass
        return found

    # ------------------------------------------------------------------ cache files
    def save(self, path: str | Path, fingerprint: Stamps | None = None) -> None:
        """Write the index atomically (temp file + rename) as a compact ``.npz``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fp = fingerprint or {}
        columns: dict[str, np.ndarray] = {
            "version": np.int64(CACHE_VERSION),
            "labels": self.labels.astype(np.int32),
            "sizes": self.sizes,
            "files": self.files,
            "fp_stamps": np.array(list(fp.values()), dtype=np.int64).reshape(len(fp), 3),
        }
        for name, strings in (
            ("root", [str(self.root)]),
            ("paths", self.paths),
            ("class_dirs", self.class_dirs),
            ("fp_dirs", list(fp)),
        ):
            columns[name] = _pack(strings)
        atomic_write(path, lambda fh: np.savez(fh, **columns))

    @staticmethod
    def load(path: str | Path) -> tuple[ImageIndex, Stamps]:
        """Read a cache file written by :meth:`save`; returns the index and its folder fingerprint."""
        with np.load(path) as z:
            if int(z["version"]) != CACHE_VERSION:
                raise LongtailError(f"{path} is an index cache of another version; rescan")

            def strings(name: str) -> list[str]:
                return _unpack(z[name])

            index = ImageIndex(
                root=Path(strings("root")[0]),
                paths=strings("paths"),
                labels=z["labels"].astype(np.int64),
                class_dirs=strings("class_dirs"),
                sizes=z["sizes"],
                files=z["files"],
            )
            if not len(index.paths) == index.labels.size == len(index.files):
                raise LongtailError(f"{path} is a damaged index cache; rescan")
            stamps = [tuple(s) for s in z["fp_stamps"].tolist()]
            fp = dict(zip(strings("fp_dirs"), stamps, strict=True))
        return index, fp


# ---------------------------------------------------------------------- folder trees
Scanned = tuple[list[tuple[str, list[str], np.ndarray]], Stamps]


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _outside_error(link: str, real: str, root: str) -> LongtailError:
    return LongtailError(
        f"{link} is a link to {real}, outside the data folder {root}; copy what it holds into the "
        "data folder, or pass --allow-outside (allow_outside=True) to read files outside it"
    )


def _scan_subtree(root: str, rel: str, allow_outside: bool = False) -> Scanned:
    """Walk one subtree; returns (class folder, sorted image file names, their identities
    [n, 2]) triples and folder mtimes. Reads directory entries only (type and inode come with the
    listing): a stat per folder and per symlink, none per file."""
    classes: list[tuple[str, list[str], np.ndarray]] = []
    mtimes: Stamps = {}
    root_real = os.path.realpath(root)
    top = os.path.join(root, rel) if rel else root
    # each folder with the real paths of the folders above it (symlinks resolved)
    stack: list[tuple[str, tuple[str, ...]]] = [(rel, (root_real, os.path.realpath(top)))]
    while stack:
        cur, chain = stack.pop()
        full = os.path.join(root, cur) if cur else root
        if not allow_outside and not _inside(chain[-1], root_real):
            raise _outside_error(full, chain[-1], root)
        try:
            inodes, links, subdirs, info = _list_folder(full, cur, chain, root_real, allow_outside)
            mtimes[cur] = folder_stamp(info)
        except OSError as err:
            raise OSError(
                err.errno,
                f"cannot read folder {full}: {err.strerror}; fix its permissions or remove it",
            ) from None
        if inodes and cur:
            names = sorted(inodes)
            ids = np.empty((len(names), 2), dtype=np.int64)
            ids[:, 0] = info.st_dev
            ids[:, 1] = np.fromiter(map(inodes.__getitem__, names), np.int64, len(names))
            if links:  # a linked file is the file it leads to
                at = {n: i for i, n in enumerate(names)}
                for name, identity in links.items():
                    ids[at[name]] = identity
            classes.append((cur, names, ids))
        stack.extend(sorted(subdirs, reverse=True))
    return classes, mtimes


def _list_folder(
    full: str, cur: str, chain: tuple[str, ...], root_real: str, allow_outside: bool
) -> tuple[Stamps, dict[str, tuple[int, int]], list[tuple[str, tuple[str, ...]]], os.stat_result]:
    """One folder's image files (name -> inode, of this folder's device), the identity (device,
    inode) of those that are links, its sub-folders with their real-path chains, and its stat."""
    inodes: Stamps = {}
    links: dict[str, tuple[int, int]] = {}
    subdirs: list[tuple[str, tuple[str, ...]]] = []
    with os.scandir(full) as it:
        for entry in it:
            name = entry.name
            if name == OUTPUT_MARKER:  # longtail's own results (plots are images too)
                return {}, {}, [], os.stat(full)
            if name[0] == ".":
                continue
            if entry.is_dir():
                real = (
                    os.path.realpath(entry.path)
                    if entry.is_symlink()
                    else os.path.join(chain[-1], name)
                )
                if real in chain:
                    continue  # a symlink back into its own ancestry: a loop
                subdirs.append((f"{cur}/{name}" if cur else name, (*chain, real)))
            elif name.lower().endswith(_EXTENSIONS) and entry.is_file():
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not allow_outside and not _inside(real, root_real):
                        raise _outside_error(entry.path, real, root_real)
                    target = entry.stat()
                    links[name] = (target.st_dev, target.st_ino)
                inodes[name] = entry.inode()
        info = os.stat(full)
    return inodes, links, subdirs, info


def scan_folder(
    root: str | Path,
    progress: ScanProgress | None = None,
    workers: int | None = None,
    allow_outside: bool = False,
) -> tuple[ImageIndex, Stamps]:
    """Scan a class-folder tree; returns the index and the mtimes of every folder seen.

    Top-level folders are walked by ``workers`` threads (default: one per core, at most 8), which
    overlap the waits of a cold or network file system. ``progress(done, total, files)`` is called
    as each top-level folder finishes. File sizes are not read here (see
    :meth:`ImageIndex.file_sizes`)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"data folder {root} does not exist or is not a folder")
    with os.scandir(root) as it:
        entries = [e for e in it if not e.name.startswith(".")]
    tops = sorted(e.name for e in entries if e.is_dir())
    loose = [e.name for e in entries if e.is_file() and e.name.lower().endswith(_EXTENSIONS)]
    if loose and not tops:
        raise LongtailError(
            f"{root} holds {len(loose)} images but no class folders; put each class's images in a "
            "sub-folder named after the class (root/CLASS/*.jpg), or pass a CSV manifest (path,label)"
        )
    classes: list[tuple[str, list[str], list[tuple[int, int]]]] = []
    mtimes = {"": folder_stamp(os.stat(root))}
    workers = workers or min(8, available_cpus())
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tops)))) as pool:
        futures = [pool.submit(_scan_subtree, str(root), top, allow_outside) for top in tops]
        for done, future in enumerate(as_completed(futures), 1):
            part, m = future.result()
            classes += part
            mtimes.update(m)
            if progress is not None:
                progress(done, len(tops), sum(len(c[1]) for c in classes))
    if not classes:
        raise LongtailError(
            f"no images found under {root} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "expected root/CLASS/*.jpg or nested root/LEVEL1/.../CLASS/*.jpg"
        )
    classes.sort(key=lambda c: c[0])
    counts = np.array([len(c[1]) for c in classes])
    paths = [f"{d}/{n}" for d, names, _ in classes for n in names]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), counts)
    sizes = np.full(len(paths), -1, dtype=np.int64)
    files = np.concatenate([c[2] for c in classes])
    index = ImageIndex(root, paths, labels, [c[0] for c in classes], sizes, files)
    check_one_label_per_file(index, f"data folder {root}")
    return index, mtimes


def same_files(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Up to 5 pairs (i, j), i in ``a``, j in ``b`` (identities [N, 2]; (-1, -1) is unknown),
    that are one file; with ``a is b``, pairs i < j within it. One sort of the identities."""
    both = a if a is b else np.concatenate([a, b])
    known = np.flatnonzero(both[:, 0] >= 0)
    ids = both[known]
    order = np.lexsort((ids[:, 1], ids[:, 0]))
    ranked = ids[order]
    pairs = []
    for d in np.flatnonzero((ranked[1:] == ranked[:-1]).all(axis=1)).tolist():
        i, j = sorted((int(known[order[d]]), int(known[order[d + 1]])))
        if a is b:
            pairs.append((i, j))
        elif i < len(a) <= j:
            pairs.append((i, j - len(a)))
        if len(pairs) == 5:
            break
    return pairs


def check_no_shared_files(a: ImageIndex, b: ImageIndex, why: str) -> None:
    """Refuse a file that ``a`` and ``b`` share (with ``a is b``: one file ``a`` reaches by two
    paths), naming both paths and ``why`` that cannot be."""
    pairs = same_files(a.files, b.files if b is not a else a.files)
    if pairs:
        i, j = pairs[0]
        raise LongtailError(
            f"{a.filepath(i)} and {b.filepath(j)} are the same file (a link or a second "
            f"spelling); {why}: remove the link or the copy"
        )


def check_one_label_per_file(index: ImageIndex, what: str) -> None:
    """Refuse an index that reaches one file by two paths (it would have two labels, or count
    twice and land in two splits)."""
    try:
        check_no_shared_files(index, index, "an image can have one label only")
    except ValueError as err:
        raise LongtailError(f"{what}: {err}") from None


def _manifest_columns(first: list[str], csv_path: Path) -> tuple[int, int, bool]:
    """(path column, label column, whether the first row is a header)."""
    cells = [c.strip().lower() for c in first]
    path_col = next((i for i, c in enumerate(cells) if c in PATH_COLUMNS), None)
    label_col = next((i for i, c in enumerate(cells) if c in LABEL_COLUMNS), None)
    if path_col is not None and label_col is not None:
        return path_col, label_col, True
    if len(first) >= 2 and first[0].strip().lower().endswith(_EXTENSIONS):
        return 0, 1, False  # no header: rows are path,label
    raise LongtailError(
        f"manifest {csv_path}: the first row {first!r} is neither a header naming a path and a label "
        f"column (path,label; also {'/'.join(PATH_COLUMNS[1:4])} and {'/'.join(LABEL_COLUMNS[1:4])}) "
        "nor a data row whose first cell is an image file; add the header 'path,label'"
    )


def read_manifest(csv_path: str | Path, allow_outside: bool = False) -> ImageIndex:
    """Index from a CSV manifest with rows ``path,label``.

    The header row is optional and may name the columns in any order (``path``/``file``/``image``
    and ``label``/``class``/``category``); a UTF-8 byte-order mark is ignored. Paths are relative
    to the manifest's folder; one that leads out of it (an absolute path elsewhere, ``../``, a
    link) is refused unless ``allow_outside``. A file listed twice, however spelt (relative and
    absolute, through a link), is refused (with two labels it has no label; with one, it would
    be counted twice and could land in both train and test); so is a listed path that is not a
    regular file. A listed file that does not exist is kept, and reported when it is read."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise MissingInputError(f"manifest {csv_path} does not exist")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
        if "\0" in text:
            raise csv.Error("it holds a NUL byte, which no path or label can")
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except (csv.Error, UnicodeDecodeError) as err:  # a field over csv's size limit, say
        raise LongtailError(
            f"manifest {csv_path} is not a UTF-8 CSV of path,label rows ({err})"
        ) from None
    if not rows:
        raise LongtailError(f"manifest {csv_path} has no rows; expected lines of 'path,label'")
    path_col, label_col, header = _manifest_columns(rows[0], csv_path)
    first_line = 2 if header else 1
    rows = rows[1:] if header else rows
    if not rows:
        raise LongtailError(f"manifest {csv_path} has a header but no rows")
    width = max(path_col, label_col) + 1
    bad = [
        i + first_line
        for i, r in enumerate(rows)
        if len(r) < width or not r[path_col].strip() or not r[label_col].strip()
    ]
    if bad:
        raise LongtailError(
            f"manifest {csv_path}: rows {bad[:5]} lack a path or a label; expected 'path,label'"
        )
    _check_manifest_rows(rows, path_col, label_col, first_line, csv_path)
    paths = [os.path.normpath(r[path_col].strip()) for r in rows]
    labels_str = [r[label_col].strip().strip("/") for r in rows]
    seen: dict[str, tuple[int, str]] = {}
    for i, (p, lab) in enumerate(zip(paths, labels_str, strict=True)):
        if p in seen:
            row, other = seen[p]
            how = f"with labels {other!r} and {lab!r}" if other != lab else "twice"
            raise LongtailError(
                f"manifest {csv_path}: {p} is listed {how} (rows {row} and {i + first_line}); "
                "list every file once, with one label"
            )
        seen[p] = (i + first_line, lab)
    class_dirs = sorted(set(labels_str))
    lookup = {c: i for i, c in enumerate(class_dirs)}
    labels = np.array([lookup[s] for s in labels_str], dtype=np.int64)
    files = _manifest_files(csv_path, paths, first_line, allow_outside)
    index = ImageIndex(
        csv_path.parent, paths, labels, class_dirs, np.full(len(paths), -1, dtype=np.int64), files
    )
    pairs = same_files(files, files)
    if pairs:
        i, j = pairs[0]
        raise LongtailError(
            f"manifest {csv_path}: rows {i + first_line} ({paths[i]}) and {j + first_line} "
            f"({paths[j]}) name the same file; list every file once, with one label"
        )
    return index


def _check_manifest_rows(
    rows: list[list[str]], path_col: int, label_col: int, first_line: int, csv_path: Path
) -> None:
    """Refuse a row that repeats a header (two manifests joined with ``cat``) and a label with an
    empty, ``.`` or ``..`` level (``/``, ``x//y``, ``../c``), naming the row."""
    for i, r in enumerate(rows):
        path, label = r[path_col].strip().lower(), r[label_col].strip()
        if path in PATH_COLUMNS and label.lower() in LABEL_COLUMNS:
            raise LongtailError(
                f"manifest {csv_path}: row {i + first_line} ({terminal_text(','.join(r))}) is a "
                "header, not an image; remove it (two manifests joined keep only the first header)"
            )
        parts = label.strip("/").split("/")
        if not all(parts) or {".", ".."} & set(parts):
            raise LongtailError(
                f"manifest {csv_path}: row {i + first_line} has the label {terminal_text(label)!r}, "
                "with an empty, '.' or '..' level; a label is a class name, or levels joined "
                "by '/' (water_area/lake)"
            )


def _manifest_files(
    csv_path: Path, paths: list[str], first_line: int, allow_outside: bool
) -> np.ndarray:
    """The identity (device, inode) of each listed file, (-1, -1) for one that does not exist;
    refuses paths that lead out of the manifest's folder (unless ``allow_outside``) and paths
    that are not regular files. One ``lstat`` a row, a ``realpath`` a folder and a link."""
    base = os.path.abspath(csv_path.parent)
    base_real = os.path.realpath(base)
    real_dirs: dict[str, str] = {}
    files = np.full((len(paths), 2), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        full = os.path.normpath(os.path.join(base, p))
        folder = os.path.dirname(full)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        real = os.path.join(real_dirs[folder], os.path.basename(full))
        try:
            info = os.lstat(full)
        except OSError:
            info = None
        if info is not None and stat.S_ISLNK(info.st_mode):
            real = os.path.realpath(full)
            info = _stat_or_none(real)
        if not allow_outside and not _inside(real, base_real):
            raise LongtailError(
                f"manifest {csv_path}: row {i + first_line} names {p}, which is {real}, outside "
                f"the manifest's folder {base}; paths are relative to that folder (pass "
                "--allow-outside, allow_outside=True, to read files elsewhere)"
            )
        if info is None:
            continue
        if not stat.S_ISREG(info.st_mode):
            raise LongtailError(
                f"manifest {csv_path}: row {i + first_line} names {p}, which is not a regular "
                "file (a folder, FIFO or device); list image files only"
            )
        files[i] = (info.st_dev, info.st_ino)
    return files


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


# ---------------------------------------------------------------------- cached entry point
def default_cache_dir() -> Path:
    return Path(os.environ.get("LONGTAIL_CACHE", Path.home() / ".cache" / "longtail"))


def _fingerprint_unchanged(root: Path, fp: Stamps) -> bool:
    try:
        return bool(fp) and all(
            folder_stamp(os.stat(root / d if d else root)) == m for d, m in fp.items()
        )
    except OSError:
        return False


def _private(info: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else."""
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return mine and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _trusted_cache_folder(folder: Path) -> bool:
    """Whether index caches may be read from and written to ``folder``: it does not exist yet,
    or it is a folder of this user's that no one else can write to."""
    try:
        info = os.stat(folder)
    except OSError:
        return True
    return stat.S_ISDIR(info.st_mode) and _private(info)


def _trusted_cache_file(cache: Path) -> bool:
    """Whether ``cache`` is a regular file (not a link) of this user's that no one else can
    write to: a cache planted by someone else is rebuilt, never believed."""
    try:
        info = os.lstat(cache)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and _private(info)


def _rows_describe(index: ImageIndex, fp: Stamps, allow_outside: bool) -> bool:
    """Whether a cached index's rows are what a scan of its folder can give: every class folder
    a plain relative path (no empty, ``.`` or ``..`` part) among the folders it was checked
    against, inside the root (unless ``allow_outside``), and every row an image file directly
    in its class's folder."""
    root_real = os.path.realpath(index.root)
    for d in index.class_dirs:
        parts = d.split("/")
        if d not in fp or not all(parts) or {".", ".."} & set(parts) or os.path.isabs(d):
            return False
        if not allow_outside and not _inside(os.path.realpath(index.root / d), root_real):
            return False
    prefixes = [f"{d}/" for d in index.class_dirs]
    if index.labels.size and not 0 <= int(index.labels.min()) <= int(index.labels.max()) < len(
        prefixes
    ):
        return False
    return all(
        p.startswith(pre) and "/" not in p[len(pre) :] and p.lower().endswith(_EXTENSIONS)
        for p, pre in zip(index.paths, map(prefixes.__getitem__, index.labels.tolist()))
    )


def build_index(
    source: str | Path,
    *,
    cache_dir: str | Path | None = None,
    rescan: bool = False,
    use_cache: bool = True,
    progress: ScanProgress | None = None,
    allow_outside: bool = False,
) -> ImageIndex:
    """Index a class-folder tree or CSV manifest, reusing a cached index when the tree is unchanged.

    The cache file lives in ``cache_dir`` (default ``$LONGTAIL_CACHE`` or ``~/.cache/longtail``),
    named after the absolute path of ``source``. A cache is data, not authority: it is used only
    when it is a file of this user's in a folder no one else can write to, when every folder it
    saw still has its modification time, change time and inode, and when its rows are what a
    scan could give (:func:`_rows_describe`); otherwise the folder is scanned again. A cache
    that cannot be written is skipped; one that cannot be read is rebuilt. ``allow_outside``
    lets links (and manifest rows) lead out of the data folder.
    """
    source = Path(source)
    if not source.exists():
        raise MissingInputError(
            f"{source} does not exist; pass a folder of class sub-folders of images or a CSV manifest"
        )
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise LongtailError(
                f"{source} is a file but not a .csv manifest; pass a folder or a CSV of path,label"
            )
        return read_manifest(source, allow_outside)
    root = source.resolve()
    key = f"{root}\0{'outside' if allow_outside else 'inside'}"
    cache = (
        Path(cache_dir or default_cache_dir())
        / f"index-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    )
    trusted = use_cache and _trusted_cache_folder(cache.parent)
    if trusted and not rescan and _trusted_cache_file(cache):
        try:
            index, fp = ImageIndex.load(cache)
            if (
                index.root == root
                and _fingerprint_unchanged(root, fp)
                and _rows_describe(index, fp, allow_outside)
            ):
                return index
        except Exception:  # noqa: BLE001 - any damage to the cache: scan again
            pass
    index, fp = scan_folder(root, progress=progress, allow_outside=allow_outside)
    index.root = root
    if trusted:
        try:
            index.save(cache, fp)
        except OSError:
            pass
    return index


__all__ = [
    "CACHE_VERSION",
    "IMAGE_EXTENSIONS",
    "LABEL_COLUMNS",
    "PATH_COLUMNS",
    "available_cpus",
    "build_index",
    "check_no_shared_files",
    "check_one_label_per_file",
    "default_cache_dir",
    "ImageIndex",
    "ScanProgress",
    "read_manifest",
    "same_files",
    "scan_folder",
    "Scanned",
]
