"""The images layer: drawing images from a trained model, writing them, and scoring them.

* :mod:`~edudiff.images.generate`: :func:`sample_images`, :func:`denoising_strip`, ``python -m edudiff sample``.
* :mod:`~edudiff.images.imageio`: PNG files and grids, without PIL.
* :mod:`~edudiff.images.evaluate`: bits/dim of a model on test images, ``python -m edudiff evaluate``.
* :mod:`~edudiff.images.sample_quality`: the course's MNIST classifier and the scores built on it (confident
  fraction, Frechet distance in its feature space).

Stands on the models (:mod:`edudiff.nn`) and the data (:mod:`edudiff.data`); the training layer uses it to draw its
periodic sample grids.
"""

from .generate import denoising_strip, sample_images
from .imageio import make_grid, save_image_grid, write_png

__all__ = ["denoising_strip", "sample_images", "make_grid", "save_image_grid", "write_png"]
