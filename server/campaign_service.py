"""CampaignService on a worker: put, get, list and pause campaigns."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc

from scangate import rewards
from scangate.datadir import DataDir
from scangate.v1 import campaigns_pb2 as camp_pb
from scangate.v1 import campaigns_pb2_grpc

from .errors import bad

__all__ = ["CampaignServicer", "campaign_to_proto"]

_STATUS = {"active": camp_pb.CAMPAIGN_STATUS_ACTIVE, "paused": camp_pb.CAMPAIGN_STATUS_PAUSED}


def campaign_to_proto(data: DataDir, record: dict[str, Any]) -> camp_pb.Campaign:
    c = record["campaign"]
    used = rewards.budgets_used(data, c["id"])
    return camp_pb.Campaign(
        campaign_id=c["id"], name=c.get("name", ""), status=_STATUS.get(c.get("status", "active"), camp_pb.CAMPAIGN_STATUS_UNSPECIFIED),
        revision=record["revision"], commitment=record["commitment"], loaded_at_ms=record["loaded_at_ms"],
        definition_json=json.dumps(c, ensure_ascii=False, sort_keys=True),
        budgets=[camp_pb.BudgetUse(prize_id=p, count=u["count"], amount_fen=u["amount_fen"])
                 for p, u in sorted(used.items())])


class CampaignServicer(campaigns_pb2_grpc.CampaignServiceServicer):
    def __init__(self, data: DataDir):
        self.data = data

    async def PutCampaign(self, request: camp_pb.PutCampaignRequest,
                          context: grpc.aio.ServicerContext) -> camp_pb.Campaign:
        if not request.definition.strip():
            raise bad("definition", "empty")
        record = await asyncio.to_thread(rewards.put_campaign, self.data, request.definition,
                                         request.source or "definition")
        return await asyncio.to_thread(campaign_to_proto, self.data, record)

    async def GetCampaign(self, request: camp_pb.GetCampaignRequest,
                          context: grpc.aio.ServicerContext) -> camp_pb.Campaign:
        if not request.campaign_id:
            raise bad("campaign_id", "missing")
        record = await asyncio.to_thread(rewards.get_campaign, self.data, request.campaign_id)
        return await asyncio.to_thread(campaign_to_proto, self.data, record)

    async def ListCampaigns(self, request: camp_pb.ListCampaignsRequest,
                            context: grpc.aio.ServicerContext) -> camp_pb.ListCampaignsReply:
        def read() -> camp_pb.ListCampaignsReply:    # LMDB reads stay off the event loop
            return camp_pb.ListCampaignsReply(campaigns=[campaign_to_proto(self.data, r)
                                                         for r in rewards.list_campaigns(self.data)])

        return await asyncio.to_thread(read)

    async def SetCampaignStatus(self, request: camp_pb.SetCampaignStatusRequest,
                                context: grpc.aio.ServicerContext) -> camp_pb.Campaign:
        names = {v: k for k, v in _STATUS.items()}
        if request.status not in names:
            raise bad("status", "must be CAMPAIGN_STATUS_ACTIVE or CAMPAIGN_STATUS_PAUSED")
        if not request.campaign_id:
            raise bad("campaign_id", "missing")
        await asyncio.to_thread(rewards.set_campaign_status, self.data, request.campaign_id, names[request.status])
        return await self.GetCampaign(camp_pb.GetCampaignRequest(campaign_id=request.campaign_id), context)
