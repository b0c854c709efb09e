"""One worker's gRPC server: the ``scangate.v1`` servicers (server/scan_service.py,
code_service.py, trace_service.py, campaign_service.py, points_service.py) behind
the guard (server/guard.py), with health checks and reflection, on a ``grpc.aio``
server.

The servicers translate messages to the package's calls and back; they know
nothing of how codes are encrypted or stored. Blocking work runs off the event
loop: scans are prepared here (``preparer``) and committed by the writer process
(server/scanlink.py); uploads, issuance and reads run in the default thread pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from scangate.clock import current as current_clock
from scangate.config import Config
from scangate.datadir import DataDir
from scangate.decide.prepared import Prepared, prepare_many
from scangate.rewards import ScanRequest
from scangate.v1 import campaigns_pb2_grpc, codes_pb2_grpc, points_pb2_grpc, trace_pb2_grpc

from .auth import TokenTable
from .campaign_service import CampaignServicer
from .code_service import CodeServicer
from .guard import Guard, GuardInterceptor
from .limits import LimitTable
from .points_service import PayoutServicer, PointsServicer
from .scan_service import ScanServicer, check_scan
from .scanlink import WriterLink
from .trace_service import RecallServicer, TraceServicer

# check_scan: a worker's check of one scan, long imported from here (tests/test_fuzz_requests.py)
__all__ = ["start_worker", "Worker", "SERVICE_NAMES", "check_scan"]

SERVICE_NAMES = tuple(
    f"scangate.v1.{name}" for name in
    ("ScanService", "CodeService", "TraceService", "CampaignService", "PointsService", "PayoutService",
     "RecallService"))


@dataclass
class Worker:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer

    async def stop(self, grace: float) -> None:
        """Refuse new calls and finish those in flight (their scans are committed
        by the writer process before they are answered)."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def _credentials(cfg: Config) -> grpc.ServerCredentials | None:
    s = cfg.server
    if not s.tls_cert:
        return None
    with open(s.tls_key, "rb") as f:
        key = f.read()
    with open(s.tls_cert, "rb") as f:
        cert = f.read()
    ca = None
    if s.tls_client_ca:
        with open(s.tls_client_ca, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def preparer(data: DataDir, cfg: Config) -> Callable[[list[list[ScanRequest]]], list[Prepared | None]]:
    """A worker's half of deciding calls' batches (scangate.decide.prepared.prepare_many),
    under the server's verdict thresholds and scan time window, at this process's
    clock reading."""
    config, policy, clock = cfg.verdicts, cfg.server.scan_time_policy, current_clock()

    def prepare_calls(batches: list[list[ScanRequest]]) -> list[Prepared | None]:
        return prepare_many(data, batches, config, clock(), policy)

    return prepare_calls


async def start_worker(data: DataDir, cfg: Config, tokens: TokenTable | None, *, writer_socket: str,
                       port: int | None = None, limits_file: str | None = None) -> Worker:
    """Build and start one worker's server on ``cfg.server.host``:``port``; its
    scans go to the writer process listening on ``writer_socket``; its rate limits
    are the buckets in ``limits_file``, shared with the server's other workers
    (None: buckets of this process alone)."""
    s = cfg.server
    limits = LimitTable.open(limits_file, cfg.limits) if limits_file else LimitTable.private(cfg.limits)
    guard = Guard(tokens, limits)
    server = grpc.aio.server(interceptors=[GuardInterceptor(guard)], options=[
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 256 << 20),
    ])
    # on PostgreSQL a batch locks what it reads as it reads it: nothing to prepare
    prepare = preparer(data, cfg) if data.decisions is None and s.prepares_in_workers(
        len(os.sched_getaffinity(0))) else None
    scans = ScanServicer(WriterLink(writer_socket), limits, prepare)
    server.add_generic_rpc_handlers((scans.handler(),))
    codes_pb2_grpc.add_CodeServiceServicer_to_server(CodeServicer(data, limits), server)
    trace_pb2_grpc.add_TraceServiceServicer_to_server(TraceServicer(data, s.epcis_schema, limits=limits), server)
    trace_pb2_grpc.add_RecallServiceServicer_to_server(RecallServicer(data), server)
    campaigns_pb2_grpc.add_CampaignServiceServicer_to_server(CampaignServicer(data), server)
    points_pb2_grpc.add_PointsServiceServicer_to_server(PointsServicer(data), server)
    points_pb2_grpc.add_PayoutServiceServicer_to_server(PayoutServicer(data), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                                         reflection.SERVICE_NAME), server)
    address = f"{s.host}:{s.port if port is None else port}"
    creds = _credentials(cfg)
    bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    await server.start()
    for name in ("",) + SERVICE_NAMES:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Worker(server, bound, health)
