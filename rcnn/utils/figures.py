"""matplotlib set-up for files (no display): the Agg backend, exact pixel sizes, atomic saves."""
import os

from rcnn.utils.fileio import atomic_write

__all__ = ['pyplot', 'parse_size', 'new_figure', 'save_figure', 'FIGURE_DPI']

FIGURE_DPI = 100


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only; works without a display)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def parse_size(text):
    """``'1200x900'`` -> (1200, 900) pixels; ValueError naming the text otherwise."""
    parts = text.lower().split('x')
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise ValueError('expected WIDTHxHEIGHT in pixels (e.g. 1200x900), got %r' % text) \
            from None
    if not (16 <= width <= 20000 and 16 <= height <= 20000):
        raise ValueError('width and height must be within 16..20000 pixels, got %r' % text)
    return width, height


def new_figure(size, **subplots):
    """(figure, axes) of exactly ``size`` = (width, height) pixels at :data:`FIGURE_DPI`."""
    plt = pyplot()
    width, height = size
    return plt.subplots(figsize=(width / FIGURE_DPI, height / FIGURE_DPI), dpi=FIGURE_DPI,
                        **subplots)


def save_figure(fig, path):
    """Write ``fig`` as a PNG of its exact pixel size to ``path`` (atomically), close it."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=FIGURE_DPI),
                     suffix='.png')
    finally:
        pyplot().close(fig)
    return os.path.abspath(path)
