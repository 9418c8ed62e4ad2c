"""Record the golden journals: ``python -m tests.golden.record OUT.json``.

Runs ``_services.ROUTINES`` on the memory transport with whatever dasync is importable and
writes every journal of the run (base64 entries) with its service, id and journal format.
Format-1 journals were recorded with dasync 0.1.0 as of commit ac775eb.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys

import dasync.testing

from . import _services


async def record() -> dict[str, object]:
    async with dasync.testing.runtime(_services.SERVICES) as rt:
        shop = rt.client.proxy(_services.Shop)
        results = {}
        for method, args, rid in _services.ROUTINES:
            handle = await rt.client.start(getattr(_services.Shop, method), *args, routine_id=rid)
            results[rid] = await handle.result(timeout=30)
        del shop
        assert rt.broker is not None
        journals = [
            {
                "service": service,
                "routine_id": rid,
                "entries": [base64.b64encode(e).decode() for e in entries],
            }
            for (service, rid), entries in sorted(rt.broker.journals.items())
        ]
    return {"results": results, "journals": journals}


if __name__ == "__main__":
    data = asyncio.run(record())
    with open(sys.argv[1], "w") as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.write("\n")
