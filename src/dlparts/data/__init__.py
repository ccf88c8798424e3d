"""Everything that turns files into samples: file readers (``points``) -> meshes and surface sampling (``meshes``)
-> any file to a normalized cloud (``clouds``); datasets, augmentations.

Point-cloud and image datasets return dict items (``docs/contracts.md``); none of them downloads anything.
"""

from dlparts.data._cache import cache_root
from dlparts.data.clouds import load_points, normalize_unit_sphere
from dlparts.data.folders import PointFolder
from dlparts.data.imagefolder import ImageFolderDataset
from dlparts.data.images import RGBStats, compute_rgb_stats, ten_crop, ten_crop_predict
from dlparts.data.meshes import Mesh, read_mesh, sample_surface
from dlparts.data.modelnet import ModelNet, ModelNet40H5, ModelNet40Normal
from dlparts.data.points import read_points
from dlparts.data.s3dis import S3DIS
from dlparts.data.scene_folder import PartFolder, SceneFolder
from dlparts.data.shapenetpart import ShapeNetPart
from dlparts.data.synthetic import Parts, Shapes
from dlparts.data.synthetic_rooms import Rooms
from dlparts.data.synthetic_images import make_synthetic_images
from dlparts.data.transforms import build_transforms

__all__ = ["Mesh", "read_mesh", "load_points", "read_points", "sample_surface", "normalize_unit_sphere",
           "ModelNet", "ModelNet40Normal", "ModelNet40H5", "PointFolder", "ShapeNetPart", "S3DIS", "SceneFolder",
           "PartFolder", "Shapes", "Parts", "Rooms", "build_transforms", "ImageFolderDataset", "RGBStats",
           "compute_rgb_stats", "ten_crop", "ten_crop_predict", "make_synthetic_images", "cache_root"]
