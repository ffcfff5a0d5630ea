"""Where a model reference points: a folder, a shipped model, or a Hugging Face Hub repo.

    my_run/ or my_run/model          a saved-model or run folder
    pretrained:NAME                  a small model shipped in the package (`tractable models`)
    hf:ORG/NAME[@REVISION]           a Hub model repo holding config.json + model.safetensors

Hub repos are fetched with `huggingface_hub` (`pip install 'tractable[hub]'`) into its
cache; `HF_ENDPOINT` points it at another server (the tests use a loopback one) and
`HF_HUB_OFFLINE=1` reuses the cache without network. `push_to_hub` publishes a model
folder in the same layout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tractable.config import CONFIG_NAME
from tractable.errors import CheckpointError, ConfigError, TractableError

if TYPE_CHECKING:
    from tractable.models.base import TractableModel

HF_PREFIX = "hf:"
PRETRAINED_PREFIX = "pretrained:"
# What a model folder may hold; everything else in a repo (README, images) is not fetched.
MODEL_FILES = (CONFIG_NAME, "model.safetensors")
OPTIONAL_FILES = ("raw.safetensors",)


class HubError(TractableError):
    """A Hub repo could not be fetched or published."""


def is_reference(ref: object) -> bool:
    """True for `pretrained:` and `hf:` strings (not local paths)."""
    return isinstance(ref, str) and ref.startswith((HF_PREFIX, PRETRAINED_PREFIX))


def resolve(ref: str | os.PathLike[str], weights: str | None = None) -> Path:
    """The local folder a model reference names, downloading a Hub repo if needed.

    `weights`: a weights file beyond `model.safetensors` to fetch too (e.g. raw.safetensors).
    """
    if not is_reference(ref):
        return Path(ref)
    text = str(ref)
    if text.startswith(PRETRAINED_PREFIX):
        from tractable import pretrained

        return pretrained.path_of(text)
    repo_id, _, revision = text[len(HF_PREFIX):].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"{text!r}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION")
    files = list(MODEL_FILES) + ([weights] if weights and weights not in MODEL_FILES else [])
    return download(repo_id, revision or None, files)


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("loading hf: models needs huggingface_hub: "
                          "pip install 'tractable[hub]'") from None
    return huggingface_hub


HUB_TIMEOUT_S = 10  # seconds to wait for the Hub's answer before saying it is unreachable


def _reachable(endpoint: str) -> bool:
    """Whether the Hub answers at all within `HUB_TIMEOUT_S` (any HTTP status counts).

    `huggingface_hub` retries a failed connection five times with back-off, each attempt
    waiting for its own timeout: minutes before it falls back to the cache. One probe
    first lets an unreachable Hub fail (or use the cache) within seconds.
    """
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"),
                               timeout=HUB_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False  # refused, unresolvable, timed out, a redirect loop's end, ...
    return True


@contextlib.contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """huggingface_hub logs each retry as a warning line; tractable reports one line."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def download(repo_id: str, revision: str | None, files: list[str]) -> Path:
    """Fetch `files` of model repo `repo_id` at `revision` into the Hub cache; their folder."""
    hub = _hub()
    from huggingface_hub import constants
    from huggingface_hub.utils import HfHubHTTPError

    endpoint = str(constants.ENDPOINT)
    if not endpoint.startswith(("http://", "https://")):
        raise HubError(f"the Hub endpoint {endpoint!r} (HF_ENDPOINT) is not an http(s):// URL")
    offline = bool(constants.HF_HUB_OFFLINE) or not _reachable(endpoint)
    folder: Path | None = None
    for name in files:
        try:
            with _quiet_hub_logs():
                path = hub.hf_hub_download(repo_id, name, revision=revision,
                                           etag_timeout=HUB_TIMEOUT_S,
                                           local_files_only=offline)
        except hub.errors.LocalEntryNotFoundError:  # before EntryNotFoundError: a subclass
            raise HubError(f"could not reach the Hub at {endpoint} to fetch hf:{repo_id}, and "
                           f"its {name} is not in the local cache; check the network (or "
                           "HF_ENDPOINT), or load a local folder") from None
        except hub.errors.EntryNotFoundError:
            raise HubError(f"hf:{repo_id} has no {name} (a tractable model repo holds "
                           f"{' and '.join(MODEL_FILES)})") from None
        except hub.errors.RepositoryNotFoundError:
            raise HubError(f"hf:{repo_id}: no such model repo (or it is private: "
                           "log in with `hf auth login` or set HF_TOKEN)") from None
        except hub.errors.RevisionNotFoundError:
            raise HubError(f"hf:{repo_id} has no revision {revision!r}") from None
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise HubError(f"could not fetch {name} of hf:{repo_id}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        except Exception as e:  # the HTTP client's own errors: redirect loops, bad URLs, ...
            raise HubError(f"could not reach the Hub at {endpoint} to fetch hf:{repo_id} "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                           ) from None
        here = Path(path).parent
        if folder is not None and here != folder:
            raise HubError(f"hf:{repo_id}: files resolved to different revisions")
        folder = here
    assert folder is not None
    return folder


def push_to_hub(model: TractableModel, repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | None = None,
                commit_message: str | None = None) -> str:
    """Publish `model` (config.json + model.safetensors) to Hub repo `repo_id`.

    Creates the repo if needed. Returns the reference `hf:ORG/NAME@COMMIT` that loads
    exactly this upload.
    """
    hub = _hub()
    from huggingface_hub.utils import HfHubHTTPError

    api = hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            if not (Path(tmp) / CONFIG_NAME).is_file():
                raise CheckpointError("save_pretrained wrote no config.json")
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, revision=revision,
                commit_message=commit_message or f"tractable {model.family} model")
    except (HfHubHTTPError, OSError) as e:
        raise HubError(f"could not publish to hf:{repo_id}: {str(e).splitlines()[0]}") from None
    return f"{HF_PREFIX}{repo_id}@{info.oid}"
