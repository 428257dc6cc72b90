"""The bundle format (v1): the only contract between `nmig export` and `nmig import`.

Writing: `EntityWriter`, `write_export_info`, `clean_partial`, `safe_component`.
Reading: `Bundle`, `EntityBundle`, `BundleError`, `content_digest`, `path_runs` (a series batch's runs of one path);
`validate_entity` (the one check of import, dry run and `inspect --check`) and `refusal` (its one line).
Workspace roots (one bundle per project and an index): `is_root`, `read_root`, `write_root`, `project_folder`,
`WorkspaceRoot`, `RootProject`, `ROOT_INDEX`.
`nmig inspect`: `summarize`, `summarize_root`, `render_root_summary`, `describe_entity`, `find_entity`, `render_summary`, `render_entity`.
pandas: `read_runs`, `read_attributes`, `read_float_series`, `read_string_series`, `read_file_series`,
`read_file`. The format itself is documented in docs/bundle-format.md.
Where a bundle lives (a folder, or a URL on object storage): `open_root` gives its `BundleRoot`, `is_url`,
`as_location`, `local_path`, `parse_storage_options`, `masked_options`, `secrets_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nmig.schema.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    KIND_FOLDERS,
    BundleError,
    BundleWarning,
    decode_atom,
    decode_datetime,
    decode_float,
    encode_datetime,
    encode_float,
    is_content_hash,
    path_runs,
    safe_component,
)
from nmig.schema.inspect import (
    describe_entity,
    find_entity,
    render_entity,
    render_root_summary,
    render_summary,
    summarize,
    summarize_root,
)
from nmig.schema.reader import Bundle, EntityBundle, content_digest
from nmig.schema.root import (
    ROOT_INDEX,
    RootProject,
    WorkspaceRoot,
    is_root,
    project_folder,
    read_root,
    write_root,
)
from nmig.schema.store import (
    BundleRoot,
    as_location,
    is_url,
    local_path,
    masked_options,
    open_root,
    parse_storage_options,
    secrets_of,
)
from nmig.schema.validate import refusal, validate_entity
from nmig.schema.writer import EntityWriter, clean_partial, write_export_info

if TYPE_CHECKING:
    from nmig.schema.frames import (
        read_attributes,
        read_file,
        read_file_series,
        read_float_series,
        read_runs,
        read_string_series,
    )

# The pandas reading API is imported when first used: pandas costs ~0.5 s of every start of nmig, and the
# import and export paths never need it.
_FRAMES = frozenset(
    {"read_attributes", "read_file", "read_file_series", "read_float_series", "read_runs", "read_string_series"}
)


def __getattr__(name: str) -> Any:
    if name in _FRAMES:
        from nmig.schema import frames

        return getattr(frames, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KIND_FOLDERS",
    "ROOT_INDEX",
    "Bundle",
    "BundleRoot",
    "BundleError",
    "BundleWarning",
    "EntityBundle",
    "EntityWriter",
    "as_location",
    "RootProject",
    "WorkspaceRoot",
    "clean_partial",
    "content_digest",
    "decode_atom",
    "describe_entity",
    "decode_datetime",
    "decode_float",
    "encode_datetime",
    "encode_float",
    "find_entity",
    "is_content_hash",
    "is_url",
    "local_path",
    "masked_options",
    "open_root",
    "parse_storage_options",
    "is_root",
    "path_runs",
    "project_folder",
    "read_attributes",
    "read_file",
    "read_file_series",
    "read_float_series",
    "read_root",
    "read_runs",
    "read_string_series",
    "refusal",
    "render_entity",
    "render_root_summary",
    "render_summary",
    "safe_component",
    "secrets_of",
    "summarize",
    "summarize_root",
    "validate_entity",
    "write_export_info",
    "write_root",
]
