"""The on-disk store of a scoring run: layout contract (`layout`), part writer (`writer`), reader.

Importing this package does not import zarr; the writer and reader import it when called.
"""

from vzcore.store.layout import LAYOUT_VERSION, pack_maps, part_path, unpack_maps

__all__ = ["LAYOUT_VERSION", "pack_maps", "part_path", "unpack_maps"]
