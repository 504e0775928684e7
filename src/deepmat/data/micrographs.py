"""Micrographs and their segmentation masks: reading, class maps, named sets.

A *class map* says which mask value is which class: RGB colours (NASA's superalloys:
secondary γ' red, tertiary γ' blue) or grey levels (EBC-2, MetalDAM: 0, 1, 2, …). NASA's
superalloy masks paint only the precipitates and leave the micrograph itself showing
elsewhere, so their map names a ``rest`` class (the matrix) for every other colour, as
NASA's own loader does; any other map refuses a mask with values outside it and reports
those values with their pixel counts.

Images are read as floats in [0, 1] (8- or 16-bit TIFF, PNG, JPEG) with an optional crop of
an information band at the bottom (MetalDAM's JPEGs carry one that its labels do not cover)
and the pixel size in µm where the TIFF metadata gives a physical resolution; grey where the
channels agree to within :data:`GREY_TOLERANCE` (SEM images saved as RGB or JPEG) and RGB
otherwise.

Named sets (``nasa-super1`` … ``nasa-super4``, ``nasa-ebc2``, ``metaldam``) are looked up under
``micrographs/`` in the data folders (``$DEEPMAT_DATA_DIR``, the cache), as the other
datasets are; their held-back test images are not distributed. MetalDAM comes as one
folder: its validation images are fixed here (:data:`METALDAM_VAL`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepmat.data.registry import dataset_dirs
from deepmat.errors import DataError, DataNotFoundError

#: channels within this of their mean everywhere make a grey image (JPEG's chroma noise)
GREY_TOLERANCE = 4 / 255
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: resolutions (dots per inch) that image writers store by default: no physical size
DEFAULT_DPI = (72.0, 96.0, 150.0, 300.0)
MICRONS_PER = {2: 25_400.0, 3: 10_000.0}  # TIFF ResolutionUnit: inch, centimetre


@dataclass(frozen=True)
class ClassMap:
    """Class names and the mask value of each: an RGB triple or a grey level. ``rest``, a
    class index, receives every value not listed (else such values are an error)."""

    names: tuple[str, ...]
    values: tuple[int | tuple[int, int, int], ...]
    rest: int | None = None

    def __post_init__(self):
        if len(self.names) != len(self.values) or not self.names:
            raise DataError(
                f"a class map needs one mask value per class: {len(self.names)} names, "
                f"{len(self.values)} values"
            )

    @property
    def rgb(self) -> bool:
        return isinstance(self.values[0], tuple)

    def labels(self, mask: np.ndarray, source: str) -> np.ndarray:
        """The class index (uint8) of each pixel of ``mask`` (H, W) grey or (H, W, 3|4)."""
        if self.rgb:
            if mask.ndim != 3:
                raise DataError(f"{source}: a grey mask, but the class map names RGB colours")
            mask = mask[..., :3]
            keys = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1] << 8) | mask[..., 2]
            wanted = [(r << 16) | (g << 8) | b for r, g, b in self.values]
        else:
            if mask.ndim == 3:
                if not (mask[..., :3] == mask[..., :1]).all():
                    raise DataError(f"{source}: a colour mask, but the class map names grey levels")
                mask = mask[..., 0]
            keys, wanted = mask.astype(np.int64), list(self.values)
        labels = np.full(keys.shape, 255 if self.rest is None else self.rest, dtype=np.uint8)
        for index, key in enumerate(wanted):
            labels[keys == key] = index
        if self.rest is None and (labels == 255).any():
            found, counts = np.unique(keys[labels == 255], return_counts=True)
            order = np.argsort(-counts)[:8]
            shown = ", ".join(f"{self._show(found[i])}: {counts[i]} px" for i in order)
            raise DataError(
                f"{source}: {int(counts.sum())} pixels have mask values outside the class map "
                f"({len(found)} values; {shown}); the map is {self.describe()}"
            )
        return labels

    def _show(self, key: int) -> str:
        return str((key >> 16, (key >> 8) & 255, key & 255)) if self.rgb else str(key)

    def describe(self) -> str:
        pairs = ", ".join(f"{n}={v}" for n, v in zip(self.names, self.values, strict=True))
        rest = f", any other value = {self.names[self.rest]}" if self.rest is not None else ""
        return pairs + rest

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "values": [list(v) if self.rgb else v for v in self.values],
            "rest": self.rest,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassMap:
        values = tuple(tuple(v) if isinstance(v, list) else int(v) for v in data["values"])
        return cls(tuple(data["names"]), values, data.get("rest"))


@dataclass
class Micrograph:
    """One image (float32 in [0, 1]: (H, W) grey or (H, W, 3) RGB), its class labels
    (uint8 (H, W), or None for an image to segment) and pixel size in µm, when known."""

    name: str
    image: np.ndarray
    labels: np.ndarray | None = None
    pixel_size: float | None = None
    source: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[:2]


def _pixel_size(image: Image.Image) -> float | None:
    """µm per pixel from a TIFF's XResolution and ResolutionUnit, unless a default."""
    tags = getattr(image, "tag_v2", None)
    if not tags or 282 not in tags:
        return None
    resolution, unit = float(tags[282]), int(tags.get(296, 2))
    if unit not in MICRONS_PER or resolution <= 0 or (unit == 2 and resolution in DEFAULT_DPI):
        return None
    return MICRONS_PER[unit] / resolution


def read_image(path: str | Path, crop_bottom: int = 0) -> Micrograph:
    """The micrograph at ``path`` (see the module docstring), ``crop_bottom`` rows removed."""
    path = Path(path)
    try:
        with Image.open(path) as opened:
            pixel_size = _pixel_size(opened)
            array = np.asarray(opened)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: pixels of type {array.dtype} are not intensities")
    scale = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    image = _cropped(array, crop_bottom, path).astype(np.float32) / scale
    if image.ndim == 3:
        image = image[..., :3]
        grey = image.mean(axis=-1)
        if np.abs(image - grey[..., None]).max() <= GREY_TOLERANCE:
            image = grey
    return Micrograph(
        path.stem, np.ascontiguousarray(image), pixel_size=pixel_size, source=str(path)
    )


#: the most distinct values an image may hold to be read as a phase map without thresholding
MAX_PHASES = 8


def read_phase_map(path: str | Path, phases: int | None = None) -> np.ndarray:
    """The k-phase label image (int64, phases 0 … k − 1 in order of intensity or colour) in
    the image file (or ``.npy`` array) at ``path``.

    An image of at most :data:`MAX_PHASES` distinct values or colours is read as is; with
    ``phases`` = k a grey micrograph is thresholded into k phases (multi-level Otsu).
    """
    path = Path(path)
    if path.suffix == ".npy":
        array = np.load(path)
    else:
        image = read_image(path).image
        array = (image * 255).round().astype(np.int64)
        if array.ndim == 3:  # colours: one code per RGB triple
            array = (array[..., 0] * 256 + array[..., 1]) * 256 + array[..., 2]
    values, labels = np.unique(array, return_inverse=True)
    labels = labels.reshape(array.shape)
    if phases is not None and len(values) > phases:
        from skimage.filters import threshold_multiotsu

        if array.ndim != 2 or phases < 2:
            raise DataError(f"{path}: only a grey 2-D image is thresholded into ≥ 2 phases")
        labels = np.digitize(array, threshold_multiotsu(array, classes=phases))
        values = np.unique(labels)
    if len(values) > MAX_PHASES or (phases is not None and len(values) != phases):
        shown = ", ".join(str(v) for v in values[:6]) + (" …" if len(values) > 6 else "")
        raise DataError(
            f"{path}: {len(values)} distinct values ({shown}), not a "
            f"{phases or f'≤ {MAX_PHASES}'}-phase image"
            + ("" if phases else "; give the number of phases to threshold it")
        )
    return labels.astype(np.int64)


def _cropped(array: np.ndarray, rows: int, path: Path) -> np.ndarray:
    if rows < 0 or rows >= array.shape[0]:
        raise DataError(f"{path}: cannot crop {rows} rows from an image of {array.shape[0]}")
    return array[: array.shape[0] - rows] if rows else array


def read_mask(path: str | Path, class_map: ClassMap) -> np.ndarray:
    """The class labels of the mask at ``path``."""
    path = Path(path)
    try:
        with Image.open(path) as opened:
            mask = np.asarray(opened.convert("RGB") if opened.mode in ("P", "RGBA") else opened)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable mask ({exc})") from None
    return class_map.labels(mask, str(path))


def image_files(folder: str | Path) -> list[Path]:
    """The images in ``folder``, sorted; an error when it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return files


def read_pairs(
    images: str | Path,
    masks: str | Path,
    class_map: ClassMap,
    mask_suffix: str = "",
    crop_bottom: int = 0,
    names: list[str] | None = None,
    crop_to_mask: bool = False,
) -> list[Micrograph]:
    """Each image of the folder ``images`` with its mask in ``masks``, named as the image
    plus ``mask_suffix`` (any image suffix); ``names`` keeps only those image stems. The
    crop applies to the image; a mask must then have the image's size. ``crop_to_mask``
    instead cuts each image at the bottom to its mask's height (an information band the
    labels do not cover; MetalDAM's is 65 rows, and two of its labels stop one row short)."""
    masks = Path(masks)
    by_stem = {p.stem: p for p in image_files(masks)}
    pairs = []
    for path in image_files(images):
        if names is not None and path.stem not in names:
            continue
        mask_path = by_stem.get(path.stem + mask_suffix)
        if mask_path is None:
            raise DataNotFoundError(f"{path}: no mask {path.stem + mask_suffix}.* in {masks}")
        labels = read_mask(mask_path, class_map)
        rows = crop_bottom
        if crop_to_mask:
            with Image.open(path) as header:
                rows = max(header.size[1] - labels.shape[0], 0)
        micrograph = read_image(path, rows)
        if labels.shape != micrograph.shape:
            raise DataError(
                f"{path}: the image is {micrograph.shape[0]}×{micrograph.shape[1]} (after "
                f"cropping {rows} rows) but its mask {mask_path.name} is "
                f"{labels.shape[0]}×{labels.shape[1]}"
            )
        micrograph.labels = labels
        pairs.append(micrograph)
    if names is not None and len(pairs) != len(names):
        found = {m.name for m in pairs}
        raise DataNotFoundError(f"{images}: missing {sorted(set(names) - found)}")
    return pairs


NASA_SUPER = ClassMap(
    ("matrix", "secondary", "tertiary"), ((0, 0, 0), (255, 0, 0), (0, 0, 255)), rest=0
)
NASA_EBC = ClassMap(("class 0", "class 1", "class 2"), (0, 1, 2))
METALDAM = ClassMap(
    ("matrix", "austenite", "martensite/austenite", "precipitate", "defect"), (0, 1, 2, 3, 4)
)
#: MetalDAM's 34 distributed labelled images have no split: these 7, drawn once with seed 0
#: from the sorted names, are its validation part, the other 27 its training part
METALDAM_VAL = (
    "micrograph10",
    "micrograph12",
    "micrograph20",
    "micrograph31",
    "micrograph35",
    "micrograph37",
    "micrograph9",
)


@dataclass(frozen=True)
class SplitFolders:
    """The image and mask folders of one split, and which image stems it keeps: ``only``
    these, or all but ``excluding`` (None: every image)."""

    images: str
    masks: str
    only: tuple[str, ...] | None = None
    excluding: tuple[str, ...] = ()


@dataclass(frozen=True)
class MicrographSet:
    """A named set: its folder under ``micrographs/``, class map, splits, the suffix of
    a mask's name after the image's stem, and whether images are cut to their masks'
    height (see :func:`read_pairs`)."""

    folder: str
    class_map: ClassMap
    splits: dict[str, SplitFolders]
    mask_suffix: str = ""
    crop_to_mask: bool = False
    description: str = ""


def _nasa(name: str, class_map: ClassMap, suffix: str, what: str) -> MicrographSet:
    splits = {s: SplitFolders(s, f"{s}_annot") for s in ("train", "val")}
    return MicrographSet(f"nasa/{name}", class_map, splits, suffix, description=what)


MICROGRAPH_SETS = {
    **{
        f"nasa-super{k}": _nasa(
            f"Super{k}", NASA_SUPER, "_mask", "Ni superalloy SEM, 512×512 (NASA)"
        )
        for k in range(1, 5)
    },
    "nasa-ebc2": _nasa(
        "EBC2", NASA_EBC, "", "environmental barrier coating SEM, masks 0/1/2 (NASA)"
    ),
    "metaldam": MicrographSet(
        "metaldam",
        METALDAM,
        {
            "train": SplitFolders("images", "labels", excluding=METALDAM_VAL),
            "val": SplitFolders("images", "labels", only=METALDAM_VAL),
        },
        crop_to_mask=True,
        description="additively manufactured steel SEM, 1024×703 below the info band",
    ),
}


def micrograph_set_dir(name: str) -> Path | None:
    """The folder of the named set in the first data folder that has it, or None."""
    roots = [d / "micrographs" / MICROGRAPH_SETS[name].folder for d in dataset_dirs()]
    return next((r for r in roots if r.is_dir()), None)


def load_micrographs(name: str, split: str) -> list[Micrograph]:
    """The labelled micrographs of the named set's ``split``."""
    if name not in MICROGRAPH_SETS:
        raise DataError(f"no micrograph set {name!r}; known: {', '.join(MICROGRAPH_SETS)}")
    spec = MICROGRAPH_SETS[name]
    if split not in spec.splits:
        raise DataError(f"{name} has the splits {', '.join(spec.splits)}, not {split!r}")
    folders = spec.splits[split]
    root = micrograph_set_dir(name)
    if root is None:
        roots = [d / "micrographs" / spec.folder for d in dataset_dirs()]
        raise DataNotFoundError(
            f"micrograph set {name} needs a folder {' or '.join(map(str, roots))} "
            "(set DEEPMAT_DATA_DIR to the folder that holds micrographs/)"
        )
    names = folders.only
    if folders.excluding:
        stems = [p.stem for p in image_files(root / folders.images)]
        names = tuple(n for n in stems if n not in folders.excluding)
    return read_pairs(
        root / folders.images,
        root / folders.masks,
        spec.class_map,
        spec.mask_suffix,
        names=list(names) if names is not None else None,
        crop_to_mask=spec.crop_to_mask,
    )
