"""Benchmark: one Bulk API 2.0 upsert of N Account rows x 10 fields against the emulator.

The emulator runs in its own process (so its peak RSS, /proc/PID/status VmHWM, is its own);
this process is the client: it builds the CSV with polars, creates the job, PUTs the data,
closes the job, polls until it finishes and downloads the result files over HTTPS with
certificate verification on.

    .venv/bin/python bench/emulator_bulk_upsert.py [--rows 1000000] [--runs 2]

Targets: server processing time < client build + upload time; emulator RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import requests
from account_fields import FIELDS

API = "v62.0"


def serve(state_dir: Path) -> None:
    """Server mode: run an emulator until SIGTERM/SIGINT; connection.json goes to state_dir."""
    import logging

    from sf_activations.emulator.server import EmulatorServer

    # The Bulk layer logs how a job's processing time splits (parse / org / outcome).
    logging.basicConfig(stream=sys.stderr, format="  [emulator] %(message)s")
    logging.getLogger("sf_activations.emulator.bulk").setLevel(logging.INFO)

    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with EmulatorServer(state_dir=state_dir) as server:
        print(f"ready {server.url}", flush=True)
        while not stop:
            time.sleep(0.2)


def build_csv(rows: int, run: int) -> bytes:
    """N rows x 10 fields; run > 0 changes the values so the second run updates every record."""
    i = pl.int_range(0, rows, eager=True)
    suffix = f"-r{run}"
    frame = pl.DataFrame(
        {
            "External_Id__c": "EXT-" + i.cast(pl.String),
            "Name": "Account " + i.cast(pl.String) + suffix,
            "Phone": "+1 555 " + (i % 10_000_000).cast(pl.String).str.zfill(7),
            "Website": "https://example.com/" + i.cast(pl.String),
            "Industry": pl.Series(["Banking", "Retail", "Energy", "Media"])
            .gather(i % 4)
            .alias("Industry"),
            "BillingCity": "City " + (i % 1000).cast(pl.String),
            "BillingState": pl.Series(["CA", "NY", "TX", "WA"]).gather(i % 4).alias("s"),
            "NumberOfEmployees": ((i * 7 + run) % 100_000).cast(pl.String),
            "AnnualRevenue": ((i % 5000) * 1000 + run).cast(pl.String),
            "Description": "Row " + i.cast(pl.String) + " of the benchmark" + suffix,
        }
    )
    return frame.write_csv(quote_style="necessary").encode("utf-8")


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used, all threads (Linux /proc).

    On a loaded machine wall times stretch with the load; CPU time does much less, so the
    bench prints both.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_job(session: requests.Session, base: str, data: bytes, pid: int) -> dict[str, Any]:
    """Create, upload, close and wait for one upsert job; returns timings and job info."""
    t0 = time.perf_counter()
    job = session.post(
        f"{base}/jobs/ingest",
        json={
            "object": "Account",
            "operation": "upsert",
            "externalIdFieldName": "External_Id__c",
            "contentType": "CSV",
            "lineEnding": "LF",
        },
    )
    job.raise_for_status()
    job_id = job.json()["id"]
    put = session.put(
        f"{base}/jobs/ingest/{job_id}/batches",
        data=data,
        headers={"Content-Type": "text/csv"},
    )
    if put.status_code != 201:
        msg = f"upload failed: {put.status_code} {put.text[:500]}"
        raise RuntimeError(msg)
    upload_s = time.perf_counter() - t0
    cpu_before = cpu_seconds(pid)
    closed = session.patch(f"{base}/jobs/ingest/{job_id}", json={"state": "UploadComplete"})
    closed.raise_for_status()
    t_closed = time.perf_counter()
    while True:
        info = session.get(f"{base}/jobs/ingest/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            break
        time.sleep(0.05)
    wall_s = time.perf_counter() - t_closed
    server_cpu_s = cpu_seconds(pid) - cpu_before
    hwm_processed = vm_hwm_mb(pid)
    t_res = time.perf_counter()
    ok = session.get(f"{base}/jobs/ingest/{job_id}/successfulResults")
    failed = session.get(f"{base}/jobs/ingest/{job_id}/failedResults")
    results_s = time.perf_counter() - t_res
    return {
        "info": info,
        "hwm_processed_mb": hwm_processed,
        "upload_s": upload_s,
        "close_to_done_s": wall_s,
        "server_cpu_s": server_cpu_s,
        "results_s": results_s,
        "successful_bytes": len(ok.content),
        "failed_bytes": len(failed.content),
        "failed_head": failed.text[:300],
    }


def main() -> None:
    """Start the emulator process, run the upsert(s), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="run 1 inserts, later runs update")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        state = Path(tmp)
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(state)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                msg = f"emulator did not start: {line!r}"
                raise RuntimeError(msg)
            info = json.loads((state / "connection.json").read_text())
            session = requests.Session()
            session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify otherwise
            session.verify = info["ca_cert"]
            session.headers["Authorization"] = f"Bearer {info['access_token']}"
            base = f"{info['instance_url']}/services/data/{API}"
            print(f"emulator pid {proc.pid}, idle RSS {vm_hwm_mb(proc.pid):.0f} MB")
            for run in range(args.runs):
                t0, c0 = time.perf_counter(), time.process_time()
                data = build_csv(args.rows, run)
                build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
                result = run_job(session, base, data, proc.pid)
                job = result["info"]
                server_s = job["totalProcessingTime"] / 1000
                client_s = build_s + result["upload_s"]
                print(
                    f"run {run + 1}: {args.rows} rows x {len(FIELDS)} fields, "
                    f"CSV {len(data) / 1e6:.1f} MB, state {job['state']}, "
                    f"processed {job['numberRecordsProcessed']}, failed {job['numberRecordsFailed']}"
                )
                print(
                    f"  client build {build_s:.2f} s (CPU {build_cpu_s:.2f} s) + upload "
                    f"{result['upload_s']:.2f} s = {client_s:.2f} s"
                )
                print(
                    f"  server processing {server_s:.2f} s (totalProcessingTime); "
                    f"close->done seen by client {result['close_to_done_s']:.2f} s; "
                    f"results download {result['results_s']:.2f} s "
                    f"({result['successful_bytes'] / 1e6:.1f} MB ok)"
                )
                print(
                    f"  emulator CPU from close to done {result['server_cpu_s']:.2f} s "
                    f"(all threads); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
                )
                if job["numberRecordsFailed"]:
                    print(f"  failed sample: {result['failed_head']!r}")
                if job.get("errorMessage"):
                    print(f"  errorMessage: {job['errorMessage']}")
                print(
                    f"  emulator peak RSS after processing {result['hwm_processed_mb']:.0f} MB, "
                    f"after downloading results {vm_hwm_mb(proc.pid):.0f} MB"
                )
                print(
                    f"  target server < client: {'OK' if server_s < client_s else 'MISSED'}; "
                    f"emulator peak RSS so far {vm_hwm_mb(proc.pid):.0f} MB"
                )
                del data
            peak = vm_hwm_mb(proc.pid)
            print(
                f"emulator peak RSS (VmHWM): {peak:.0f} MB -> {'OK' if peak <= 2048 else 'OVER'} 2 GB"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
