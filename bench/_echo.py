"""A bare grpcio echo server with the process model of ``scangate serve``, for
``python -m bench grpc``.

``python -m bench._echo --workers N --reply-hex HEX [--port 0] [--host 127.0.0.1]``

A supervisor holds the port (SO_REUSEPORT) and starts N worker processes with the
``spawn`` method; each runs one ``grpc.aio`` server on that port with the
``grpc.so_reuseport`` option, so the kernel spreads connections over the workers,
exactly as in server/main.py. The one method, ``/scangate.v1.ScanService/Scan``, is
a generic handler: it parses the ``scangate.v1.ScanRequest`` and returns a
pre-built ``scangate.v1.ScanDecision`` (the bytes given with --reply-hex, parsed
once at start and serialised for every reply). No interceptor, no metrics, no
storage: the floor for a unary call of the same sizes on the same stack.

It prints ``echo: serving on HOST:PORT with N worker(s)`` when every worker is up,
and stops on SIGTERM or SIGINT (workers finish in-flight calls first).
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time


def _worker_main(host: str, port: int, reply: bytes, ready: multiprocessing.connection.Connection) -> None:
    import asyncio

    import grpc
    from scangate.v1 import scan_pb2 as scan_pb

    decision = scan_pb.ScanDecision.FromString(reply)

    async def scan(request: scan_pb.ScanRequest, context: grpc.aio.ServicerContext) -> scan_pb.ScanDecision:
        return decision

    async def run() -> None:
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", 256 << 20),
            ("grpc.max_send_message_length", 256 << 20),
        ])
        handler = grpc.method_handlers_generic_handler("scangate.v1.ScanService", {
            "Scan": grpc.unary_unary_rpc_method_handler(scan, request_deserializer=scan_pb.ScanRequest.FromString,
                                                        response_serializer=scan_pb.ScanDecision.SerializeToString),
        })
        server.add_generic_rpc_handlers((handler,))
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready.send(bound)
        ready.close()
        await stop.wait()
        await server.stop(5)

    asyncio.run(run())


def serve(host: str, port: int, workers: int, reply: bytes) -> int:
    held = None
    if port == 0:
        held = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((host, 0))
        port = held.getsockname()[1]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctx = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        for slot in range(workers):
            parent_end, child_end = ctx.Pipe(duplex=False)
            worker = ctx.Process(target=_worker_main, args=(host, port, reply, child_end), name=f"echo-worker-{slot}")
            worker.start()
            procs.append(worker)
            child_end.close()
            if not parent_end.poll(60):
                raise RuntimeError(f"echo worker {slot} did not start within 60 s")
            try:
                parent_end.recv()
            except EOFError:
                raise RuntimeError(f"echo worker {slot} failed to start") from None
        print(f"echo: serving on {host}:{port} with {workers} worker(s)", flush=True)
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)  # type: ignore[arg-type]
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
        if held is not None:
            held.close()
    print("echo: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._echo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reply-hex", required=True, help="serialized scangate.v1.ScanDecision, hex")
    args = parser.parse_args(argv)
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    return serve(args.host, args.port, args.workers, bytes.fromhex(args.reply_hex))


if __name__ == "__main__":
    sys.exit(main())
