"""Upload throughput and memory: a file through ftapi's `/v1/files` (S3 backend) against a direct
boto3 upload of the same bytes to the same S3 endpoint, in one run.

    .venv/bin/python -m bench.upload [--gb 1.0] [--purpose user_data|fine-tune] [--rounds 2]

The S3 endpoint is moto's server in its own process (a real HTTP S3 API, in memory). ftapi runs as
`ftapi serve` in its own process; the client is the official `openai` SDK. The server's RSS is
sampled every 20 ms while the upload runs. Rounds alternate the order (boto3 first, then ftapi
first) and the median of each side is reported, with the server's CPU seconds per GiB: on a
machine with few cores the client, ftapi and the S3 endpoint compete for the same CPUs.

Both sides use the same boto3 checksum setting (--checksums). It matters on a plain-HTTP endpoint:
with `when_required` botocore signs the payload, hashing every byte with SHA-256, while
`when_supported` sends an unsigned payload with a CRC trailer. Over HTTPS neither hashes the body.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import boto3
import openai
import psutil
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from tests.conftest import s3_env
from tests.support.moto_server import run_moto_server
from tests.support.server import run_server

KEY = "sk-bench-upload"
MiB = 1024 * 1024


def make_file(path: Path, size: int, purpose: str) -> None:
    with open(path, "wb") as f:
        if purpose == "fine-tune":
            line = (
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "lorem ipsum " * 40},
                            {"role": "assistant", "content": '{"label": "positive"}'},
                        ]
                    }
                ).encode()
                + b"\n"
            )
            block = line * (8 * MiB // len(line))
        else:
            block = os.urandom(8 * MiB)
        written = 0
        while written < size:
            piece = block[: size - written]
            f.write(piece)
            written += len(piece)


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.start = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def server_pid(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise RuntimeError("ftapi server process not found")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--purpose", choices=["user_data", "fine-tune"], default="user_data")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--checksums",
        choices=["when_supported", "when_required"],
        default="when_required",
        help="boto3's request checksum setting for BOTH sides (the server's default: when_required)",
    )
    args = parser.parse_args()
    size = int(args.gb * 1024 * MiB)

    with tempfile.TemporaryDirectory() as tmp, run_moto_server() as endpoint:
        path = Path(tmp) / ("data.jsonl" if args.purpose == "fine-tune" else "data.bin")
        make_file(path, size, args.purpose)
        env = s3_env(endpoint, "ftapi-bench") | {
            "FTAPI_API_KEY": KEY,
            "FTAPI_MAX_FILE_BYTES": str(size + MiB),
            "FTAPI_S3__PART_SIZE": str(8 * MiB),
            "FTAPI_S3__REQUEST_CHECKSUM_CALCULATION": args.checksums,
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
            config=Config(request_checksum_calculation=args.checksums),
        )
        s3.create_bucket(Bucket="direct")
        transfer = TransferConfig(multipart_chunksize=8 * MiB, multipart_threshold=8 * MiB, max_concurrency=4)
        with run_server(Path(tmp) / "srv", env) as srv:
            client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=1800)
            pid = server_pid(int(srv.url.rsplit(":", 1)[1]))
            direct: list[float] = []
            ours: list[float] = []
            growth: list[int] = []
            server_cpu: list[float] = []
            server = psutil.Process(pid)

            def run_direct(i: int) -> None:
                start = time.perf_counter()
                s3.upload_file(str(path), "direct", f"obj-{i}", Config=transfer)
                direct.append(time.perf_counter() - start)
                s3.delete_object(Bucket="direct", Key=f"obj-{i}")

            def run_ours() -> None:
                with RssSampler(pid) as rss, open(path, "rb") as f:
                    cpu = server.cpu_times()
                    start = time.perf_counter()
                    created = client.files.create(file=f, purpose=args.purpose)  # type: ignore[arg-type]
                    ours.append(time.perf_counter() - start)
                    after = server.cpu_times()
                    server_cpu.append(after.user + after.system - cpu.user - cpu.system)
                assert created.bytes == size
                growth.append(rss.peak - rss.start)
                client.files.delete(created.id)

            for i in range(args.rounds):
                if i % 2 == 0:
                    run_direct(i)
                    run_ours()
                else:
                    run_ours()
                    run_direct(i)

    mb = size / 1e6
    t_direct, t_ours = statistics.median(direct), statistics.median(ours)
    print(
        f"{size / MiB:.0f} MiB, purpose {args.purpose}, checksums {args.checksums} on both sides, "
        f"{args.rounds} rounds (medians), {os.cpu_count()} CPUs"
    )
    print(f"direct boto3 to S3:       {mb / t_direct:8.1f} MB/s")
    print(f"ftapi /v1/files to S3:    {mb / t_ours:8.1f} MB/s")
    print(f"ratio ftapi / boto3:      {t_direct / t_ours:8.2f}x   (goal >= 0.8x)")
    print(f"server RSS growth (max):  {max(growth) / MiB:8.1f} MiB (goal < 100 MiB)")
    print(f"server CPU per GiB:       {statistics.median(server_cpu) / (size / 1024**3):8.2f} s")


if __name__ == "__main__":
    main()
