"""Measure Redis memory per customer and per call record.

Run from the repository root (bench/run runs it for you):
    .venv/bin/python bench/memory_bench.py [--customers 100000] [--calls 10000] [--json f]

INFO memory used_memory before and after seeding the customers (hash + index sets, as
ivr.customer writes them), then before and after `--calls` calls stored by the real
functions of /voice/incoming (CallInfo.parse, answer_incoming): each call's record hash,
its place in the recent/active indexes and the caller's repeat-window sorted set. MEMORY
USAGE of sample keys shows the parts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    app_config,
    declare_incident,
    phone_of,
    redis_url,
    seed_customers,
    used_memory,
)
from loadgen import CallerMix, twilio_form  # noqa: E402

from ivr import call as calls  # noqa: E402
from ivr import keys  # noqa: E402
from ivr.services import build_services  # noqa: E402


def sample_usage(r: Any, names: list[str]) -> float:
    sizes = [r.memory_usage(n) or 0 for n in names]
    return sum(sizes) / len(sizes) if sizes else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with redis_url() as url:
        svc = build_services(app_config(url), redis_timeout=5.0)
        r = svc.redis
        r.flushdb()
        declare_incident(svc)
        base = used_memory(r)
        seed_customers(r, 0, args.customers)
        customers = used_memory(r)
        hash_bytes = sample_usage(r, [keys.customer(phone_of(i)) for i in range(0, 1000, 10)])
        index_bytes = sum(r.memory_usage(k) or 0 for k in r.scan_iter("{ivr}:customers:*"))

        froms = CallerMix(list(range(args.customers)), seed=3).take(args.calls)
        sids = []
        for i, raw_from in enumerate(froms):
            call = calls.CallInfo.parse(twilio_form(f"CA{i:032x}", raw_from))
            calls.answer_incoming(svc, call)
            sids.append(call.call_sid)
        recorded = used_memory(r)
        record_bytes = sample_usage(r, [keys.call(s) for s in sids[::100]])
        stored = sum(1 for _ in r.scan_iter(keys.call("*"), count=10_000))

    per_customer = (customers - base) / args.customers
    per_call = (recorded - customers) / args.calls
    result = {
        "customers": args.customers, "calls": args.calls, "call_records": stored,
        "bytes_per_customer": round(per_customer),
        "customer_hash_bytes": round(hash_bytes),
        "customer_index_bytes": round(index_bytes / args.customers),
        "mb_per_100k_customers": round(per_customer * 100_000 / 2**20, 1),
        "bytes_per_call": round(per_call),
        "call_hash_bytes": round(record_bytes),
        "mb_per_10k_calls": round(per_call * 10_000 / 2**20, 1),
    }
    print(f"customers: {per_customer:,.0f} bytes each ({result['mb_per_100k_customers']} MB "
          f"per 100,000; the hash {hash_bytes:,.0f} B, the index sets "
          f"{result['customer_index_bytes']} B)")
    print(f"call records: {per_call:,.0f} bytes each ({result['mb_per_10k_calls']} MB per "
          f"10,000; the record hash {record_bytes:,.0f} B, the rest is the recent/active "
          "indexes and the caller's repeat window)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
