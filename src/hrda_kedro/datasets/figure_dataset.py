"""One catalog entry per figure: saved from matplotlib, loaded back as an image."""

from __future__ import annotations

from kedro.io.core import get_filepath_str
from kedro_datasets.matplotlib import MatplotlibDataset
from PIL import Image


class FigureDataset(MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` that can also be loaded, as a ``PIL.Image``.

    kedro-datasets' figure dataset is save-only, so a report figure needed a second
    (transcoded) ``pillow.ImageDataset`` entry to be read back in a notebook. This keeps one
    entry per figure: nodes save a ``Figure``, ``catalog.load`` returns the saved PNG, and
    kedro viz previews it (the parent's ``preview``). Versioning, atomic local writes and
    ``save_args`` are the parent's.
    """

    def load(self) -> Image.Image:  # type: ignore[override]
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, mode="rb") as handle:
            image = Image.open(handle)
            image.load()  # read now: the file closes with this block
        return image
