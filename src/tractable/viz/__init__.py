"""Pictures, one module per kind, each drawn one way (matplotlib where it is installed,
`pip install 'tractable[plots]'`; one Pillow fallback):

* `grids`: image grids (samples, completions, interpolation strips; labels and colour bars
  with matplotlib), animated GIFs;
* `heatmaps`: per-pixel NLL overlays and maps with colour bars;
* `charts`: the bits/dim curve, score histograms, a test set's bits/dim with one image
  marked;
* `canvas`: what they draw with (fonts, the heat ramp, matplotlib figures, PNG writing).
"""

from tractable.viz.canvas import (
    DPI,
    font_context,
    have_matplotlib,
    heat_colors,
    save_png,
)
from tractable.viz.charts import histogram_with_marker, plot_curves, save_histograms
from tractable.viz.grids import (
    MARK_COLOR,
    PAD_VALUE,
    TILE_TARGET,
    ColorBar,
    GridLayout,
    display_scale,
    grid_image,
    grid_layout,
    labelled_grid,
    make_grid,
    occlude,
    render_grid,
    save_gif,
    save_gif_of_pngs,
    save_grid,
    save_labelled_grid,
    tiles_of,
)
from tractable.viz.heatmaps import heatmap_with_colorbar, nll_overlays, save_nll_heatmaps

__all__ = [
    "DPI", "MARK_COLOR", "PAD_VALUE", "TILE_TARGET", "ColorBar", "GridLayout",
    "display_scale", "font_context", "grid_image", "grid_layout", "have_matplotlib",
    "heat_colors", "heatmap_with_colorbar", "histogram_with_marker", "labelled_grid",
    "make_grid", "nll_overlays", "occlude", "plot_curves", "render_grid", "save_gif",
    "save_gif_of_pngs", "save_grid", "save_histograms", "save_labelled_grid",
    "save_nll_heatmaps", "save_png", "tiles_of",
]
