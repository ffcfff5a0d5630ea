"""`tractable app`: a local web page to look at models — sample, complete, score, edit.

Built with Gradio (the optional extra `pip install 'tractable[app]'`), served on 127.0.0.1
only, fully offline: analytics off, no share link, no server-side rendering, every asset
from the installed package (checked in a real browser by the test suite). Uploads are
validated (`tractable.app.uploads`), deleted as soon as they are read, and Gradio's
temporary folder is a private one removed when the app stops. See docs/app.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from tractable.app.session import AppModel, load_app_model
from tractable.app.uploads import MAX_BYTES, UploadError, read_upload
from tractable.errors import ConfigError

__all__ = ["AppModel", "UploadError", "load_app_model", "read_upload", "serve"]

HOST = "127.0.0.1"


def offline_environment(temp_dir: str) -> None:
    """Environment Gradio reads: no telemetry or update checks, no hub calls, files in
    `temp_dir`. Must be set before Gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = temp_dir


def serve(models: Sequence[AppModel], port: int = 7860, quiet: bool = False) -> None:
    """Serve the app on http://127.0.0.1:`port` until interrupted (Ctrl-C or SIGTERM)."""
    temp_dir = tempfile.mkdtemp(prefix="tractable-app-")
    offline_environment(temp_dir)
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise ConfigError("the app needs Gradio: pip install 'tractable[app]'") from None
        from tractable.app.ui import CSS, build_app

        demo = build_app(models, upload_dir=temp_dir)
        demo.queue(default_concurrency_limit=1)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        if not quiet:
            print(f"tractable app: http://{HOST}:{port}  ({len(models)} model(s); uploads "
                  f"are never kept: temporary files in {temp_dir}, removed on exit)",
                  flush=True)
        try:
            _launch(demo, port, css=CSS)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            demo.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _launch(demo: Any, port: int, css: str) -> None:
    try:
        demo.launch(server_name=HOST, server_port=port, share=False, ssr_mode=False,
                    mcp_server=False, max_file_size=MAX_BYTES, show_error=True, quiet=True,
                    inbrowser=False, footer_links=[], css=css, prevent_thread_lock=True)
    except OSError as e:
        raise ConfigError(f"cannot serve on {HOST}:{port} ({e}); choose another --port") \
            from None
    demo.block_thread()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main_models(paths: Sequence[str], **kwargs: Any) -> list[AppModel]:
    """The models to serve: each path's, or the shipped pretrained ones when none is given."""
    if paths:
        return [load_app_model(p, **kwargs) for p in paths]
    return pretrained_models(**kwargs)


NO_MODELS = ("no model given and this installation ships no pretrained models: pass run "
             "or model folders, e.g. `tractable app runs/demo` after `make demo`")


def pretrained_models(data: str | None = None, **kwargs: Any) -> list[AppModel]:
    """The shipped ready models (`tractable.load("pretrained:NAME")`), each with the test
    split of the dataset its record names."""
    try:
        from tractable import pretrained  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError(NO_MODELS) from None
    names = list(pretrained.available())
    if not names:
        raise ConfigError(NO_MODELS)
    models = []
    for name in names:
        # the record names the dataset; one not on this machine is said on the page (and
        # at start-up, by `tractable app`'s preparation)
        models.append(load_app_model(pretrained.path_of(name), data=data, name=name,
                                     **kwargs))
    return models


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `tractable app`")
