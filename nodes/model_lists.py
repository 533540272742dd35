"""Model dropdowns that offer each loader's own files first.

Every loader lists a whole ComfyUI folder (``diffusion_models`` holds the plain Wan DiT, RealisDance-DiT and
Wan2.2-Animate side by side), and the front end preselects the first entry. Each list is sorted into: files
whose index says they are the loader's kind (``models/checkpoint/file_kind.py``; a name hint such as
``relight`` first among them), then files whose kind cannot be read (e.g. an old pickle), then files of
another kind; alphabetical within each group, so the default is one of the loader's own files whenever the
folder has one.
"""
from __future__ import annotations

from .. import host
from ..models.checkpoint.file_kind import file_kind


def model_choices(folder: str, kind: str, name_hint: str | None = None) -> list[str]:
    """The file names of ``folder`` for a loader of ``kind`` (a ``file_kind`` constant), its own first."""
    names = host.list_model_files(folder)

    def rank(name: str) -> tuple[int, int]:
        try:
            found = file_kind(host.model_file(folder, name))
        except Exception:  # noqa: BLE001 - a file that cannot be resolved is listed last, never an error here
            found = "unreadable"
        group = 0 if found == kind else 1 if found is None else 2
        hinted = 0 if group == 0 and name_hint and name_hint in name.lower() else 1
        return group, hinted

    return sorted(names, key=rank)  # stable: the host's (alphabetical) order within each group
