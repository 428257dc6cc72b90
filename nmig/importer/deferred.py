"""neptune-scale's Azure upload path, imported on its first use instead of with the client.

`neptune_scale.sync.sync_process` imports `upload_to_azure` from `neptune_scale.sync.storage.azure_storage`
at its top (sync_process.py:19), and that module imports the Azure SDK with aiohttp (azure_storage.py:3-5):
~0.6 s of every `nmig import`, `verify` and `migrate` start on this machine, for a provider the service names
only on Azure-backed installations (storage_urls.provider, sync_process.py FileUploaderThread._upload_file).
`defer_azure_sdk()`, called before neptune-scale is first imported, puts a stand-in module in its place
whose `upload_to_azure` imports the real module on its first call and hands the call to it, unchanged.
tests/importer/test_import_storage_providers.py uploads through the Azure path (the emulator's Azure
provider), so the stand-in is exercised wherever the real function is.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

AZURE_MODULE = "neptune_scale.sync.storage.azure_storage"
_LOCK = threading.Lock()


def _real_azure_module() -> Any:
    with _LOCK:
        module = sys.modules.get(AZURE_MODULE)
        if module is None or getattr(module, "_nmig_deferred", False):
            sys.modules.pop(AZURE_MODULE, None)
            module = importlib.import_module(AZURE_MODULE)
        return module


async def upload_to_azure(*args: Any, **kwargs: Any) -> None:
    await _real_azure_module().upload_to_azure(*args, **kwargs)


def defer_azure_sdk() -> None:
    """Idempotent; a no-op once the client's sync module (or the real Azure module) is loaded."""
    if AZURE_MODULE in sys.modules or "neptune_scale.sync.sync_process" in sys.modules:
        return
    stand_in = types.ModuleType(AZURE_MODULE, "nmig.importer.deferred's stand-in; see there")
    stand_in.upload_to_azure = upload_to_azure  # type: ignore[attr-defined]
    stand_in._nmig_deferred = True  # type: ignore[attr-defined]
    sys.modules[AZURE_MODULE] = stand_in
