"""PointsService and PayoutService on a worker: balances, redemptions, the
leaderboard; the payout outbox."""

from __future__ import annotations

import asyncio

import grpc

from scangate import payouts, points, rewards
from scangate.datadir import DataDir
from scangate.v1 import points_pb2 as points_pb
from scangate.v1 import points_pb2_grpc

from .errors import bad, check_count

__all__ = ["PointsServicer", "PayoutServicer"]

_MAX_ID = rewards.MAX_ID_CHARS


def _check_actor(actor: str, field: str = "actor") -> None:
    if not 1 <= len(actor) <= _MAX_ID:
        raise bad(field, "1 to 128 characters")


class PointsServicer(points_pb2_grpc.PointsServiceServicer):
    def __init__(self, data: DataDir):
        self.data = data

    async def GetPoints(self, request: points_pb.GetPointsRequest,
                        context: grpc.aio.ServicerContext) -> points_pb.PointsReply:
        _check_actor(request.actor)
        limit = request.history_limit or 20
        check_count(limit, "history_limit", 1000)
        return await asyncio.to_thread(self._points, request.actor, limit)

    def _points(self, actor: str, limit: int) -> points_pb.PointsReply:
        balance, earned, rows = points.statement(self.data, actor, limit)     # one read transaction
        return points_pb.PointsReply(
            actor=actor, balance=balance, earned=earned,
            history=[points_pb.PointsEntry(delta=h["delta"], balance=h["balance"], reason=h["reason"],
                                           ref=h["ref"], at_ms=h["at_ms"]) for h in rows])

    async def RedeemPoints(self, request: points_pb.RedeemPointsRequest,
                           context: grpc.aio.ServicerContext) -> points_pb.RedeemPointsReply:
        _check_actor(request.actor)
        r = await asyncio.to_thread(points.redeem, self.data, request.actor, request.points, request.request_id,
                                    request.note)
        return points_pb.RedeemPointsReply(ok=r.ok, balance=r.balance, reason=r.reason or "")

    async def Leaderboard(self, request: points_pb.LeaderboardRequest,
                          context: grpc.aio.ServicerContext) -> points_pb.LeaderboardReply:
        top = request.top or 10
        check_count(top, "top", 1000)
        board = await asyncio.to_thread(points.leaderboard, self.data, request.period, top, request.actor or None)
        reply = points_pb.LeaderboardReply(period=board["period"], top=[
            points_pb.LeaderboardEntry(rank=e["rank"], actor=e["actor"], points=e["points"]) for e in board["top"]])
        if "actor" in board:
            a = board["actor"]
            reply.actor.CopyFrom(points_pb.LeaderboardEntry(rank=a["rank"] or 0, actor=a["actor"], points=a["points"]))
            reply.ranked = a["of"]
        return reply


_PAYOUT_STATES = {"pending": points_pb.PAYOUT_STATE_PENDING, "sending": points_pb.PAYOUT_STATE_SENDING,
                  "confirmed": points_pb.PAYOUT_STATE_CONFIRMED, "failed": points_pb.PAYOUT_STATE_FAILED}


class PayoutServicer(points_pb2_grpc.PayoutServiceServicer):
    def __init__(self, data: DataDir):
        self.data = data

    async def ListPayouts(self, request: points_pb.ListPayoutsRequest,
                          context: grpc.aio.ServicerContext) -> points_pb.ListPayoutsReply:
        names = {v: k for k, v in _PAYOUT_STATES.items()}
        if request.state and request.state not in names:
            raise bad("state", f"{request.state} is not a known PayoutState")
        limit = request.limit or 100
        check_count(limit, "limit", 10_000)
        rows = await asyncio.to_thread(payouts.list_payouts, self.data)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        want = names.get(request.state)
        chosen = [r for r in rows if want is None or r["state"] == want][:limit]
        return points_pb.ListPayoutsReply(counts=counts, payouts=[points_pb.Payout(
            key=r["key"], state=_PAYOUT_STATES.get(r["state"], points_pb.PAYOUT_STATE_UNSPECIFIED), actor=r.get("actor", ""),
            campaign_id=r["key"].split(":", 1)[0], prize_id=r.get("prize_id", ""), kind=r.get("kind", ""),
            amount_fen=r.get("amount_fen", 0), attempts=r.get("attempts", 0),
            confirmation=str(r.get("confirmation") or ""), error=r.get("error", "")) for r in chosen])
