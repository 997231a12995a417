"""Copy one release AMI to 16 regions of the emulator, serially and in parallel.

The emulator makes every copy available at once, so the figures measure our
own per-region API round trips, not AWS snapshot copy time.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from standins.images import register_release_image, sample_manifest

from infra import copy, emulator
from infra.aws import Aws
from infra.config import Config, parse_config
from infra.releases import resolve_release

# Sixteen regions, each serving one country so that the config validates.
REGIONS = {
    "us-east-1": "US",
    "us-east-2": "MX",
    "us-west-1": "CA",
    "us-west-2": "GT",
    "ca-central-1": "PA",
    "sa-east-1": "BR",
    "eu-west-1": "IE",
    "eu-west-2": "GB",
    "eu-west-3": "FR",
    "eu-central-1": "DE",
    "eu-north-1": "SE",
    "ap-northeast-1": "JP",
    "ap-northeast-2": "KR",
    "ap-southeast-1": "SG",
    "ap-southeast-2": "AU",
    "ap-south-1": "IN",
}


def bench_config() -> Config:
    regions: list[dict[str, Any]] = [
        {"name": name, "geolocation": {"countries": [country]}}
        for name, country in REGIONS.items()
    ]
    regions[0]["default"] = True
    return parse_config(
        {
            "domain": "notary.example.com",
            "hosted_zone": "example.com",
            "version": "0.1.0",
            "regions": regions,
            "copy": {"poll_seconds": 0.05},
        }
    )


def register_source(aws: Aws) -> None:
    """Register a tagged release AMI in the home region, as a bake would."""
    register_release_image(aws, "us-east-1", sample_manifest())


def reset(endpoint_url: str) -> None:
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def measure(endpoint_url: str, config: Config, concurrency: int) -> tuple[float, float]:
    """Copy to every region from a clean emulator; return the wall time in
    seconds and the mean number of API calls per destination region."""
    reset(endpoint_url)
    aws = Aws(config, endpoint_url=endpoint_url)
    register_source(aws)
    source = copy.describe_source(aws, resolve_release(aws, None))
    settings = copy.CopySettings(
        timeout=config.copy_.timeout_seconds, interval=config.copy_.poll_seconds
    )
    destinations = [name for name in config.region_names if name != source.region]
    calls_before = {name: aws.calls[name] for name in destinations}
    started = time.perf_counter()
    results = copy.copy_release(
        aws,
        source=source,
        regions=config.region_names,
        settings=settings,
        concurrency=concurrency,
    )
    elapsed = time.perf_counter() - started
    failed = [result.region for result in results if not result.ok]
    if failed:
        raise RuntimeError(f"copy failed in {failed}")
    calls = [aws.calls[name] - calls_before[name] for name in destinations]
    return elapsed, sum(calls) / len(calls)


def run() -> str:
    # Each copy warns about the emulator's gaps; the benchmark reports them once.
    logging.getLogger("infra.copy").setLevel(logging.ERROR)
    config = bench_config()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    server = emulator.start(state_dir)
    try:
        serial, serial_calls = measure(server.endpoint_url, config, 1)
        default = config.copy_.concurrency
        parallel, parallel_calls = measure(server.endpoint_url, config, default)
    finally:
        emulator.stop(state_dir)
    load = os.getloadavg()[0]
    return f"""## Copy: one release to 16 regions

`python -m benchmarks copy`: copies a registered release AMI from us-east-1
to 15 other regions of a moto 5.2 server on loopback (our own poller at
{config.copy_.poll_seconds} s), first with concurrency 1, then with the
default copy.concurrency of {default}. Each run starts from a reset emulator.

| concurrency | wall time | API calls per destination region |
|---|---|---|
| 1 | {serial:.1f} s | {serial_calls:.1f} |
| {default} | {parallel:.1f} s | {parallel_calls:.1f} |

Speed-up with concurrency {default}: {serial / parallel:.2f}x. One-minute load
average at the end: {load:.1f} on {os.cpu_count()} cores. The emulator is one
Python process whose CPU work the parallel run shares, so the speed-up falls
when other work uses the cores.

The emulator reports every copy as available at once, so these times are
API round trips, not snapshot copies, which take minutes to hours on AWS.
The emulator does not implement EnableImageDeprecation, and its HTTP 500
response took between 0.02 s and 2 s per call in a separate probe on the
same machine, so part of each region's time is the emulator's error path.
Counted calls are requests made by our code, not botocore's retries."""
