"""The app's page, built with Gradio (`pip install 'tractable[app]'`).

Four tabs over the models given (`tractable.app.session.AppModel`): Sample, Complete,
Likelihood, Edit. Every handler turns a `TractableError` into a message on the page.
Uploaded files are read once, validated (`tractable.app.uploads`), deleted, and kept only
as a small tensor in the browser session's state.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tractable.app.session import MAX_BATCH, MAX_COMPLETIONS, AppModel
from tractable.app.uploads import read_upload
from tractable.errors import TractableError
from tractable.models import Completable, Invertible
from tractable.models.capabilities import missing
from tractable.sampling import Progress
from tractable.viz import grid_image, heatmap_with_colorbar, histogram_with_marker, labelled_grid

MAX_ATTRIBUTE_SLIDERS = 20
IMAGE_HEIGHT = 220  # px of the single-image previews
SLIDERS_PER_ROW = 5
NO_CLASS = -1

CSS = """
footer {display: none !important}
.tractable-note {color: #555}
"""


def _errors_shown(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run `fn`, showing a `TractableError` as the page's error message and as one line in
    the terminal (`user_error_line`), never a traceback: the user's input was wrong, not the
    app."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TractableError as e:
            print(user_error_line(fn.__name__, e), file=sys.stderr, flush=True)
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def user_error_line(action: str, e: Exception) -> str:
    """The terminal's one line for an input the app refused."""
    text = " ".join(str(e).split())
    return f"tractable app: {action.strip('_').replace('_', ' ')}: refused: {text}"


def _as_array(image: Tensor) -> np.ndarray:
    """uint8 [C, H, W] -> what gr.State keeps: uint8 [C, H, W] numpy (no file)."""
    return image.cpu().numpy().astype(np.uint8)


def _tensor(state: Any) -> Tensor | None:
    if state is None:
        return None
    return torch.from_numpy(np.asarray(state["image"], dtype=np.uint8))


def progress_callback(progress: Any, desc: str) -> Callable[[Progress], None]:
    """A `model.sample` callback moving the page's progress indicator (a `gr.Progress`)."""
    def callback(p: Progress) -> None:
        progress((p.step, p.total), desc=desc, unit=p.unit)

    return callback


def _picture(image: Tensor, scale: int = 8) -> Any:
    return grid_image(image[None], nrow=1, scale=scale)


def build_app(models: Sequence[AppModel], upload_dir: str | None = None) -> Any:
    """The Gradio Blocks of the app over `models` (the first is shown first)."""
    import gradio as gr

    if not models:
        raise TractableError("the app needs at least one model")
    by_name = {m.name: m for m in models}
    if len(by_name) != len(models):
        raise TractableError("two models have the same name: give distinct run folders")
    first = models[0]
    pickers: list[tuple[Any, Any]] = []  # (test index, "Use test image") of every picker

    def model_of(name: str) -> AppModel:
        if name not in by_name:
            raise TractableError(f"unknown model {name!r}")
        return by_name[name]

    def class_choices(m: AppModel) -> list[tuple[str, int]]:
        return [(f"{k}: {c}" if c != str(k) else c, k) for k, c in enumerate(m.class_names)]

    # ---- image pickers: a test image by index, or an upload --------------------------------
    def pick_test(name: str, index: float | None) -> tuple[Any, Any, str]:
        m = model_of(name)
        if index is None:
            raise TractableError("enter a test image number")
        image, label = m.test_image(int(index))
        caption = f"test image {int(index)}" + (
            f" (class {m.class_names[label]})" if label is not None and m.class_names else "")
        return {"image": _as_array(image), "label": label}, _picture(m.seen(image)), caption

    def take_upload(name: str, path: str | None) -> tuple[Any, Any, str, None]:
        """A refused upload clears the picked image (and so every result shown for it)
        and says why once, in the caption; the terminal gets one line."""
        m = model_of(name)
        if path is None:
            return None, None, "", None  # the upload was cleared
        try:
            data = Path(path).read_bytes()
        finally:
            _forget(path, upload_dir)
        try:
            image, note = read_upload(data, m.shape, m.dark_background)
        except TractableError as e:
            print(user_error_line("upload", e), file=sys.stderr, flush=True)
            return None, None, f"**upload refused:** {e}", None
        caption = "uploaded image" + (f" ({note})" if note else "")
        if m.test is None and m.shape[0] == 1:
            caption += " (this model has no test images to tell its data's polarity: taken " \
                       "as it is)"
        return {"image": _as_array(image), "label": None}, _picture(m.seen(image)), caption, None

    def picker(prefix: str, label: str = "image") -> tuple[Any, Any, Any, Any, Any]:
        """Two columns (call inside a gr.Row): test index or upload, and the preview."""
        with gr.Column(scale=1):
            has_test = first.test is not None
            index = gr.Number(value=0, precision=0, minimum=0, label=f"test {label} #",
                              visible=has_test, elem_id=f"{prefix}-index")
            use = gr.Button(f"Use test {label}", visible=has_test,
                            elem_id=f"{prefix}-use-test")
            pickers.append((index, use))
            upload = gr.File(label=f"or upload an {label} (PNG/JPEG; brought to the model's "
                             "size and polarity)",
                             file_types=["image"], type="filepath", height=120,
                             elem_id=f"{prefix}-upload")
        with gr.Column(scale=1):
            preview = gr.Image(label=f"the {label} the model sees", type="pil", format="png",
                               interactive=False, height=IMAGE_HEIGHT, width=IMAGE_HEIGHT,
                               elem_id=f"{prefix}-preview")
            caption = gr.Markdown(elem_classes=["tractable-note"])
        state = gr.State(None)
        use.click(_errors_shown(pick_test), [model_box, index], [state, preview, caption])
        upload.upload(_errors_shown(take_upload), [model_box, upload],
                      [state, preview, caption, upload])
        return index, use, upload, preview, state

    def need(state: Any, name: str) -> tuple[AppModel, Tensor, int | None]:
        image = _tensor(state)
        if image is None:
            raise TractableError("pick a test image or upload one first")
        return model_of(name), image, state.get("label")

    with gr.Blocks(title="tractable", analytics_enabled=False,
                   delete_cache=(60, 600)) as demo:
        gr.Markdown("## tractable — exact-likelihood image models")
        with gr.Row():
            model_box = gr.Dropdown([m.name for m in models], value=first.name, label="model",
                                    elem_id="model", scale=1)
            about = gr.Markdown(first.describe(), elem_classes=["tractable-note"])

        with gr.Tabs():
            # ---- Sample -------------------------------------------------------------------------
            with gr.Tab("Sample", id="sample"):
                with gr.Row():
                    with gr.Column(scale=1):
                        temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05,
                                                label="temperature", elem_id="temperature")
                        class_a = gr.Dropdown(class_choices(first), label="class",
                                              value=0 if first.conditional else None,
                                              visible=first.conditional, elem_id="class-a")
                        class_b = gr.Dropdown([("(none)", NO_CLASS), *class_choices(first)],
                                              value=NO_CLASS, label="blend with class",
                                              visible=first.conditional, elem_id="class-b")
                        weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05,
                                           label="weight of the second class",
                                           visible=first.conditional, elem_id="blend-weight")
                        seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                        batch = gr.Slider(1, MAX_BATCH, value=16, step=1, label="batch",
                                          elem_id="batch")
                        go = gr.Button("Sample", variant="primary", elem_id="sample-button")
                    with gr.Column(scale=2):
                        samples = gr.Image(label="samples", type="pil", format="png",
                                           interactive=False, elem_id="samples")
                        sample_note = gr.Markdown(elem_classes=["tractable-note"])

                @_errors_shown
                def do_sample(name: str, t: float, a: int | None, b: int | None, w: float,
                              s: float | None, n: float,
                              progress: Any = gr.Progress(),  # noqa: B008
                              ) -> tuple[Any, str]:
                    m = model_of(name)
                    start = time.perf_counter()
                    x = m.sample(int(n), float(t), int(s or 0), a,
                                 None if b in (None, NO_CLASS) else int(b), float(w),
                                 callback=progress_callback(progress, "sampling"))
                    took = time.perf_counter() - start
                    return (grid_image(x, nrow=math.ceil(math.sqrt(len(x)))),
                            f"{len(x)} samples, temperature {float(t):g}, seed {int(s or 0)} "
                            f"({took:.2f} s)")

                go.click(do_sample, [model_box, temperature, class_a, class_b, weight, seed,
                                     batch], [samples, sample_note])

            # ---- Complete -----------------------------------------------------------------------
            with gr.Tab("Complete", id="complete"):
                complete_note = gr.Markdown(_complete_note(first),
                                            elem_classes=["tractable-note"])
                with gr.Row():
                    c_index, _, _, _, c_state = picker("complete")
                with gr.Row():
                    rows = gr.Slider(0, first.shape[1], value=first.shape[1] // 2, step=1,
                                     label="rows to keep", elem_id="rows")
                    count = gr.Slider(1, MAX_COMPLETIONS, value=8, step=1,
                                      label="completions", elem_id="completions")
                    c_seed = gr.Number(value=0, precision=0, label="seed", elem_id="complete-seed")
                    c_temp = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="temperature",
                                       elem_id="complete-temperature")
                c_go = gr.Button("Complete", variant="primary", elem_id="complete-button")
                # the grid has its own column headers: no label badge over them
                completions = gr.Image(label="original | occluded | completions", type="pil",
                                       format="png", interactive=False, show_label=False,
                                       elem_id="completions-out")
                c_out_note = gr.Markdown(elem_classes=["tractable-note"])

                @_errors_shown
                def do_complete(name: str, state: Any, k: float, n: float, s: float | None,
                                t: float,
                                progress: Any = gr.Progress(),  # noqa: B008
                                ) -> tuple[Any, str]:
                    from tractable.sampling.prefix import raster_prefix_length
                    from tractable.viz import occlude

                    m, image, label = need(state, name)
                    start = time.perf_counter()
                    done = m.complete(image, int(k), int(n), int(s or 0), float(t), label,
                                      callback=progress_callback(progress, "completing"))
                    took = time.perf_counter() - start
                    seen = m.seen(image)
                    kept = occlude(seen[None], raster_prefix_length(m.shape, int(k)))[0]
                    row = torch.cat([image[None], kept[None], done])[None]
                    labels = ["original", "occluded"] + [f"#{i + 1}" for i in range(len(done))]
                    return (labelled_grid(row, labels, scale=4),
                            f"{len(done)} completions keeping {int(k)} rows ({took:.2f} s)")

                c_go.click(do_complete, [model_box, c_state, rows, count, c_seed, c_temp],
                           [completions, c_out_note])
                c_state.change(lambda: (None, ""), None, [completions, c_out_note])

            # ---- Likelihood ---------------------------------------------------------------------
            with gr.Tab("Likelihood", id="likelihood"):
                with gr.Row():
                    _, _, _, _, l_state = picker("likelihood")
                l_go = gr.Button("Score", variant="primary", elem_id="score-button")
                score = gr.Markdown(elem_id="score")
                with gr.Row():
                    heat = gr.Image(label="per-pixel NLL, −log p(x_i | x_<i)", type="pil",
                                    format="png", interactive=False, elem_id="heatmap")
                    hist = gr.Image(label="bits/dim of the test set, this image marked",
                                    type="pil", format="png", interactive=False,
                                    show_label=False, elem_id="histogram")

                @_errors_shown
                def do_score(name: str, state: Any) -> tuple[str, Any, Any]:
                    m, image, _ = need(state, name)
                    res = m.likelihood(image)
                    label = m.model.bits_per_dim_label
                    text = f"**{res.bits_per_dim:.4f} {label}** ({res.scored_as})"
                    if res.test_bpd.size:
                        text += (f"; above {res.percentile:.1f}% of {len(res.test_bpd)} "
                                 "test images")
                    else:
                        text += (". No test-set histogram: no test images ("
                                 f"{m.no_test_reason or 'no dataset recorded'})")
                    heat_img = (heatmap_with_colorbar(res.pixel_nll, scale=8)
                                if res.pixel_nll is not None else None)
                    if res.pixel_nll is None:
                        text += ". No per-pixel map: a flow gives whole-image likelihoods only."
                    hist_img = (histogram_with_marker(res.test_bpd, res.bits_per_dim,
                                                      f"{m.name}: test {label}")
                                if res.test_bpd.size else None)
                    return text, heat_img, hist_img

                l_go.click(do_score, [model_box, l_state], [score, heat, hist])
                # another image (or a refused upload): the last image's results go
                l_state.change(lambda: ("", None, None), None, [score, heat, hist])

            # ---- Edit (invertible models) ------------------------------------------------------
            with gr.Tab("Edit", id="edit"):
                edit_note = gr.Markdown(_edit_note(first), elem_classes=["tractable-note"])
                with gr.Row():
                    _, _, _, _, e_state = picker("edit", "image")
                    with gr.Column(scale=1):
                        edited = gr.Image(label="edited: decode(encode(x) + Σ α_k v_k)",
                                          type="pil", format="png", interactive=False,
                                          height=IMAGE_HEIGHT, elem_id="edited")
                sliders = []
                names = first.class_names if first.can_edit else []
                for row_start in range(0, MAX_ATTRIBUTE_SLIDERS, SLIDERS_PER_ROW):
                    with gr.Row():
                        for k in range(row_start, row_start + SLIDERS_PER_ROW):
                            sliders.append(gr.Slider(
                                -2.0, 2.0, value=0.0, step=0.1, label=_attribute_label(names, k),
                                visible=k < len(names), elem_id=f"attribute-{k}"))
                e_go = gr.Button("Apply attributes", variant="primary", elem_id="edit-button")
                gr.Markdown("**Blend** the image above with a second one through the latent "
                            "space")
                with gr.Row():
                    _, _, _, _, b_state = picker("blend", "image")
                    with gr.Column(scale=1):
                        blended = gr.Image(label="blend", type="pil", format="png",
                                           interactive=False, height=IMAGE_HEIGHT,
                                           elem_id="blended")
                t_slider = gr.Slider(0.0, 1.0, value=0.5, step=0.05,
                                     label="interpolation: 0 = first image, 1 = second",
                                     elem_id="interpolation")
                b_go = gr.Button("Blend", variant="primary", elem_id="blend-button")
                with gr.Row():
                    strip = gr.Image(label="the path from the first to the second", type="pil",
                                     format="png", interactive=False, elem_id="blend-strip")

                @_errors_shown
                def do_edit(name: str, state: Any, *alphas: float) -> Any:
                    m, image, _ = need(state, name)
                    return _picture(m.edit(image, [float(a) for a in alphas]))

                @_errors_shown
                def do_blend(name: str, a_state: Any, b_state_: Any, t: float) -> tuple[Any, Any]:
                    m, a, _ = need(a_state, name)
                    _, b, _ = need(b_state_, name)
                    one, path = m.blend(a, b, float(t))
                    return _picture(one), grid_image(path, nrow=len(path), scale=4)

                e_go.click(do_edit, [model_box, e_state, *sliders], edited)
                for s in sliders:
                    s.release(do_edit, [model_box, e_state, *sliders], edited)
                b_go.click(do_blend, [model_box, e_state, b_state, t_slider], [blended, strip])
                e_state.change(lambda: (None, None, None), None, [edited, blended, strip])
                b_state.change(lambda: (None, None), None, [blended, strip])
                t_slider.release(do_blend, [model_box, e_state, b_state, t_slider],
                                 [blended, strip])

        # ---- switching models re-labels the controls ---------------------------------------------
        @_errors_shown
        def switch(name: str) -> list[Any]:
            m = model_of(name)
            choices = class_choices(m)
            names = m.class_names if m.can_edit else []
            return [
                m.describe(),
                gr.update(choices=choices, value=0 if m.conditional else None,
                          visible=m.conditional),
                gr.update(choices=[("(none)", NO_CLASS), *choices], value=NO_CLASS,
                          visible=m.conditional),
                gr.update(visible=m.conditional),
                gr.update(maximum=m.shape[1], value=m.shape[1] // 2),
                _complete_note(m), _edit_note(m),
                *[gr.update(visible=k < len(names), value=0.0, label=_attribute_label(names, k))
                  for k in range(MAX_ATTRIBUTE_SLIDERS)],
                None, None, None, None,
                *[gr.update(visible=m.test is not None) for _ in range(2 * len(pickers))],
            ]

        model_box.change(switch, model_box,
                         [about, class_a, class_b, weight, rows, complete_note, edit_note,
                          *sliders, c_state, l_state, e_state, b_state,
                          *[c for pair in pickers for c in pair]])
        _ = c_index  # the pickers' inputs are wired inside `picker`
    return demo


def _attribute_label(names: Sequence[str], k: int) -> str:
    return f"α for class {names[k]}" if k < len(names) else ""


def _complete_note(m: AppModel) -> str:
    if m.can_complete:
        return ("The model keeps the first rows of the image (raster order) and samples the "
                "rest, pixel by pixel.")
    return missing(Completable, "Completion", m.family) + "."


def _edit_note(m: AppModel) -> str:
    if not m.can_edit:
        return missing(Invertible, "Latent edits", m.family) + "."
    if not m.class_names:
        return "This model's test set has no labels: no attribute vectors, blending only."
    return ("Each slider adds α times the attribute vector of a class (mean latent of its "
            "test images minus that of the others, Glow §5.3).")


def _forget(path: str, upload_dir: str | None) -> None:
    """Delete an uploaded file (and its folder, which Gradio makes per upload) at once."""
    p = Path(path)
    try:
        p.unlink(missing_ok=True)
        if upload_dir and p.parent != Path(upload_dir) and \
                Path(upload_dir) in p.parents and not any(p.parent.iterdir()):
            os.rmdir(p.parent)
    except OSError:
        pass  # the whole upload folder goes when the app stops
