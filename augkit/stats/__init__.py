"""Per-channel mean and standard deviation of image data, streamed, mergeable, saved and loaded.

The statistics are those of every pixel of every image, each pixel weighing the same whatever
its image's size, on the [0, 1] pixel scale (``Normalize``'s convention):

    channel_stats  ``ChannelStats``: (count, mean, M2) per channel, updated image by image or
                   batch by batch, merged exactly across shards, saved and loaded as JSON;
                   ``MIN_STD``, the floor below which a channel counts as constant; the
                   mean and std images (per pixel); ``floored_std``, what per-pixel
                   standardisation divides by (``PIXEL_STD_FLOOR``, one 8-bit gray level)
    dataset        ``compute_stats``: every image of a ``Dataset``, in parallel if asked, merged
                   in a fixed order (bit-identical for any number of workers); unreadable files
                   skipped and listed (``Skipped``, ``StatsResult``)
    stats_file     what a statistics file may hold: each value checked, the mean and std
                   images' .npy headers checked before their data is read

    >>> from augkit.io import open_dataset
    >>> from augkit.stats import compute_stats
    >>> result = compute_stats(open_dataset("sample_data/digits", split="train"))
    >>> result.stats.mean, result.stats.std       # float64 [1], gray digits
"""

from augkit.stats.channel_stats import MIN_STD, PIXEL_STD_FLOOR, ChannelStats, floored_std
from augkit.stats.dataset import Skipped, StatsResult, compute_stats

__all__ = ["MIN_STD", "PIXEL_STD_FLOOR", "ChannelStats", "Skipped", "StatsResult", "compute_stats", "floored_std"]
