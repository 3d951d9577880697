"""Time to index a Million-AID-sized class-folder tree: longtail vs torchvision's ImageFolder, same run.

Usage: python benchmarks/index.py [--root DIR] [--files 1000000] [--repeats 3]

Writes (once; reused if present) a tree of empty ``.jpg`` files shaped like Million-AID: 51 leaf
classes at depth 3 or 2 under the 8 level-1 folders (lower-level names illustrative), counts spread log-uniformly from 2,000 to 45,000
and scaled to ``--files``. Then prints, on a warm file-system cache:

- ``torchvision.datasets.ImageFolder(root)`` construction (it lists the files of each top-level
  folder and reads no hierarchy);
- longtail's first index (``scan_folder``: paths, leaf labels, every hierarchy level);
- longtail's cached reload (``build_index`` with an unchanged tree), which checks every cached
  row against the folder it describes, beside the same reload without that check (the cache
  file read and its folder stamps compared: what a reload cost before rows were checked);
- the content check a run's identity holds: each file's size and modification time
  (``ImageIndex.file_stats``, a ``stat`` per file), and with it what ``train`` / ``compare`` pay
  to index a tree they have seen (cached reload + content check).

With ``--cold`` (root only) the page cache is dropped before every timed run, as after a reboot
or on first touching a network file system.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LEAVES = [
    "agriculture_land/arable_land/dry_field",
    "agriculture_land/arable_land/greenhouse",
    "agriculture_land/arable_land/paddy_field",
    "agriculture_land/arable_land/terraced_field",
    "agriculture_land/meadow",
    "agriculture_land/woodland/forest",
    "agriculture_land/woodland/orchard",
    "commercial_land/commercial_area",
    "industrial_land/factory_area",
    "industrial_land/mining_area",
    "industrial_land/power_station/solar_power_plant",
    "industrial_land/power_station/wind_turbine",
    "industrial_land/oil_field",
    "industrial_land/storage_tank",
    "industrial_land/works/quarry",
    "public_service_land/leisure_land/golf_course",
    "public_service_land/leisure_land/ground_track_field",
    "public_service_land/leisure_land/basketball_court",
    "public_service_land/leisure_land/tennis_court",
    "public_service_land/leisure_land/baseball_field",
    "public_service_land/leisure_land/swimming_pool",
    "public_service_land/special_land/cemetery",
    "public_service_land/special_land/church",
    "public_service_land/religious_land",
    "public_service_land/special_land/sparse_shrub",
    "residential_land/apartment",
    "residential_land/detached_house",
    "residential_land/mobile_home_park",
    "transportation_land/airport_area/runway",
    "transportation_land/airport_area/apron",
    "transportation_land/airport_area/helipad",
    "transportation_land/highway_area/bridge",
    "transportation_land/highway_area/intersection",
    "transportation_land/highway_area/roundabout",
    "transportation_land/highway_area/viaduct",
    "transportation_land/highway_area/parking_lot",
    "transportation_land/port_area/pier",
    "transportation_land/railway_area/railway",
    "transportation_land/railway_area/train_station",
    "transportation_land/road",
    "unutilized_land/bare_land",
    "unutilized_land/desert",
    "unutilized_land/ice_land",
    "unutilized_land/island",
    "unutilized_land/rock_land",
    "unutilized_land/sparse_shrub_land",
    "water_area/beach",
    "water_area/dam",
    "water_area/lake",
    "water_area/river",
    "water_area/ocean",
]


def make_tree(root: Path, total: int) -> None:
    counts = np.exp(np.linspace(np.log(45_000), np.log(2_000), len(LEAVES)))
    counts = np.maximum(1, np.round(counts / counts.sum() * total)).astype(int)
    counts[0] += total - counts.sum()
    for leaf, n in zip(LEAVES, counts):
        folder = root / leaf
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            open(folder / f"{i:06d}.jpg", "wb").close()
    (root / ".complete").write_text(str(total))


def drop_page_cache() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3")


def timed(fn, repeats: int, cold: bool = False) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        if cold:
            drop_page_cache()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(tempfile.gettempdir()) / "longtail-index-bench"
    )
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated tree")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each run")
    args = parser.parse_args()

    from torchvision.datasets import ImageFolder

    from longtail.data.index import ImageIndex, _fingerprint_unchanged, build_index, scan_folder

    marker = args.root / ".complete"
    if not (marker.exists() and marker.read_text() == str(args.files)):
        shutil.rmtree(args.root, ignore_errors=True)
        t0 = time.perf_counter()
        make_tree(args.root, args.files)
        print(
            f"wrote {args.files:,} empty .jpg files in {time.perf_counter() - t0:.0f}s under {args.root}"
        )
    cache = Path(tempfile.mkdtemp())
    scan_folder(args.root)  # warm the file-system cache
    t_if, ds = timed(
        lambda: ImageFolder(str(args.root), loader=lambda p: p, allow_empty=True),
        args.repeats,
        args.cold,
    )
    t_scan, (index, _) = timed(lambda: scan_folder(args.root), args.repeats, args.cold)

    build_index(args.root, cache_dir=cache, rescan=True)
    t_cached, cached = timed(
        lambda: build_index(args.root, cache_dir=cache), args.repeats, args.cold
    )
    (cache_file,) = list(cache.iterdir())

    def unchecked_reload() -> ImageIndex:
        loaded, fp = ImageIndex.load(cache_file)
        assert _fingerprint_unchanged(args.root.resolve(), fp)
        return loaded

    t_unchecked, _ = timed(unchecked_reload, args.repeats, args.cold)

    def content_check() -> None:
        fresh = ImageIndex(
            index.root, index.paths, index.labels, index.class_dirs, index.sizes * 0 - 1
        )
        sizes, mtimes = fresh.file_stats()
        assert sizes.min() >= 0 and mtimes.min() > 0

    t_content, _ = timed(content_check, args.repeats, args.cold)
    assert len(ds) == len(index) == len(cached) == args.files
    n_levels = index.distribution().num_levels
    print(
        f"files: {len(index):,}; leaf classes: {index.num_classes}; hierarchy levels: {n_levels}; "
        f"cores: {os.cpu_count()}; page cache: {'dropped before each run' if args.cold else 'warm'}"
    )
    print(
        f"{'torchvision ImageFolder(root)':42s} {t_if:7.2f} s   (8 top-level classes, no hierarchy, no sizes)"
    )
    print(
        f"{'longtail first index (scan_folder)':42s} {t_scan:7.2f} s   {t_if / t_scan:.2f}x ImageFolder's speed"
    )
    print(
        f"{'longtail cached reload (build_index)':42s} {t_cached:7.2f} s   {t_if / t_cached:.1f}x ImageFolder's speed"
    )
    print(
        f"{'  the same without the row check':42s} {t_unchecked:7.2f} s   the check costs "
        f"{t_cached - t_unchecked:.2f} s ({t_cached / t_unchecked:.2f}x)"
    )
    print(
        f"{'content check (size + mtime per file)':42s} {t_content:7.2f} s   "
        f"{t_content / t_if:.2f}x ImageFolder's time"
    )
    seen = t_cached + t_content
    print(
        f"{'train/compare on a tree seen before':42s} {seen:7.2f} s   {t_if / seen:.2f}x "
        "ImageFolder's speed (cached reload + content check)"
    )
    shutil.rmtree(cache, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)


if __name__ == "__main__":
    main()
