"""Everything that turns files into samples: file readers (``points``) -> meshes and surface sampling (``meshes``)
-> any file to a normalized cloud (``clouds``); datasets, augmentations.

Point-cloud and image datasets return dict items (``docs/contracts.md``); none of them downloads anything.

The names below are imported from their modules on first use (PEP 562): ``dlparts predict`` on one point file needs
a few of these modules, and importing all of them (every dataset, Pillow) added about 100 modules to its start-up.
"""

from __future__ import annotations

import importlib

#: Each public name and the module of this package that defines it.
_HOMES = {
    "cache_root": "_cache",
    "load_points": "clouds", "normalize_unit_sphere": "clouds",
    "PointFolder": "folders",
    "ImageFolderDataset": "imagefolder",
    "RGBStats": "images", "compute_rgb_stats": "images", "ten_crop": "images", "ten_crop_predict": "images",
    "Mesh": "meshes", "read_mesh": "meshes", "sample_surface": "meshes",
    "ModelNet": "modelnet", "ModelNet40H5": "modelnet", "ModelNet40Normal": "modelnet",
    "read_points": "points",
    "S3DIS": "s3dis",
    "PartFolder": "scene_folder", "SceneFolder": "scene_folder",
    "ShapeNetPart": "shapenetpart",
    "Parts": "synthetic", "Shapes": "synthetic",
    "Rooms": "synthetic_rooms",
    "make_synthetic_images": "synthetic_images",
    "build_transforms": "transforms",
}

__all__ = ["Mesh", "read_mesh", "load_points", "read_points", "sample_surface", "normalize_unit_sphere",
           "ModelNet", "ModelNet40Normal", "ModelNet40H5", "PointFolder", "ShapeNetPart", "S3DIS", "SceneFolder",
           "PartFolder", "Shapes", "Parts", "Rooms", "build_transforms", "ImageFolderDataset", "RGBStats",
           "compute_rgb_stats", "ten_crop", "ten_crop_predict", "make_synthetic_images", "cache_root"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
