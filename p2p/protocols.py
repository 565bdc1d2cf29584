"""Protocol ids of the request-response protocols (PROTOCOL §7.3).

Owns: `/lc/<chain_id>/{status,sync,blob}/1`. Must not: hold logic.
"""

from __future__ import annotations


def status_protocol(chain_id: str) -> str:
    return f"/lc/{chain_id}/status/1"


def sync_protocol(chain_id: str) -> str:
    return f"/lc/{chain_id}/sync/1"


def blob_protocol(chain_id: str) -> str:
    return f"/lc/{chain_id}/blob/1"
