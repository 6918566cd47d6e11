"""The on-disk store of a scoring run (docs/store-layout.md).

`layout` (names, paths, map packing), `location` (local folder or URL), `root` (the root
attributes and the plan), `completion` (which parts are complete: their marks and the index),
`writer` (one part), `reader` (`open_store`: examples and parts), `tables` (Parquet rows of the
parts), `verify` (read every complete part back), `forms` and `reduced` (layout v4's top-k and
targeted rows, and reading them back dense). The store reads and writes; it neither scores,
nor draws, nor asks corpus questions (`vzcore.queries` does, above it). Importing this package does
not import zarr.
"""

from vzcore.store.errors import ExampleNotScoredError, StoreError
from vzcore.store.layout import LAYOUT_VERSION, pack_maps, part_path, unpack_maps
from vzcore.store.location import Location, is_url
from vzcore.store.root import RootAttrs

__all__ = [
    "LAYOUT_VERSION",
    "ExampleNotScoredError",
    "Location",
    "RootAttrs",
    "StoreError",
    "is_url",
    "pack_maps",
    "part_path",
    "unpack_maps",
]
