"""Images and datasets in: files read as they are shown, folders opened as (source, label) indexes.

    images    ``read_image``: every format to RGB (or gray) arrays under the pixel contract,
              EXIF orientation applied, alpha composited, sizes checked from the header before
              any decode; one ``ImageReadError`` per unreadable file
    writer    ``write_image`` / ``encode_image``: uint8 RGB or gray to PNG, JPEG, WebP, BMP,
              TIFF, written atomically
    datasets  ``open_dataset``: ImageFolder (with or without splits), flat folders, CIFAR,
              scikit-learn's digits, segmentation folders, COCO files and ``augkit preprocess``
              outputs, as one ``Dataset`` index
    targets   ``Targets`` (a mask, or boxes and labels) that ``Dataset.read_targets`` gives;
              label images read as stored
    coco      COCO instances files: images, categories, boxes
    cifar     CIFAR-10/100 pickles through a restricted unpickler
    packed    ``augkit preprocess`` output folders: manifest checked, arrays memory-mapped
              (``packed_targets``: their masks and boxes)

    >>> from augkit.io import open_dataset, read_image
    >>> image = read_image("sample_data/photos/coffee.jpg")     # H x W x 3 uint8
    >>> train = open_dataset("sample_data/digits", split="train")
    >>> image, label = train[0]                                  # 8 x 8 x 1 uint8, class index
"""

from augkit.io.datasets import Dataset, open_dataset, sample_data_dir
from augkit.io.images import read_image
from augkit.io.writer import write_image

__all__ = ["Dataset", "open_dataset", "read_image", "sample_data_dir", "write_image"]
