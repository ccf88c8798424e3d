"""The base of the point-cloud datasets: items read from per-sample tensors held in memory."""

from __future__ import annotations

from typing import Callable, ClassVar

from torch.utils.data import Dataset


class CloudDataset(Dataset):
    """Item ``i`` is ``{key: getattr(self, attr)[i] for key, attr in fields.items()}``, then ``transform(item)``
    when a transform is set.  ``fields`` maps item keys to attributes whose first dimension is the sample (e.g.
    ``{"points": "points", "label": "labels"}`` with ``points [M, N, C]`` and ``labels [M]``); the first field's
    length is the dataset's.  A dataset that builds its items otherwise overrides :meth:`_item`.
    """

    fields: ClassVar[dict[str, str]] = {}
    transform: Callable[[dict], dict] | None = None

    def __len__(self) -> int:
        return len(getattr(self, next(iter(self.fields.values()))))

    def _item(self, i: int) -> dict:
        return {key: getattr(self, attr)[i] for key, attr in self.fields.items()}

    def __getitem__(self, i: int) -> dict:
        item = self._item(i)
        return self.transform(item) if self.transform else item


#: Classification items ``{"points": [N, C], "label": []}`` and semantic-segmentation items ``{"points": [N, C],
#: "seg": [N]}``, read from attributes ``points [M, N, C]`` and ``labels [M]`` / ``seg [M, N]``.
CLASSIFICATION_FIELDS = {"points": "points", "label": "labels"}
SEGMENTATION_FIELDS = {"points": "points", "seg": "seg"}
