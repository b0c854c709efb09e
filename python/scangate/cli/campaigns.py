"""scan, campaign, audit, points: the commands of the decision and reward engine."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import click

from .. import clock, plugins, rewards
from .. import points as points_mod
from ..config import CONFIG_FILE_NAME, load_config
from ..errors import ScangateError
from ._base import EXIT_NOT_GENUINE, _emit, _fail, _open, cli, data_option, json_option


@cli.command()
@data_option
@click.argument("code")
@click.option("--actor", required=True, help="Who scanned (a user or store id).")
@click.option("--actor-type", type=click.Choice(["consumer", "store"]), default="consumer", show_default=True)
@click.option("--region", type=int, default=None, help="6-digit adcode of the scan.")
@click.option("--lat", type=float, default=None, help="Latitude (with --lon), resolved offline.")
@click.option("--lon", type=float, default=None)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"TOML config (default DIR/{CONFIG_FILE_NAME} if present).")
@click.option("--request-id", default=None, help="Idempotency key: a retry with it gets the same decision "
              "(default: a new random id).")
@json_option
def scan(data: Path, code: str, actor: str, actor_type: str, region: int | None, lat: float | None,
         lon: float | None, config_file: Path | None, request_id: str | None, as_json: bool) -> None:
    """Decide one scan: the verdict (genuine, counterfeit, revoked, clone, diverted)
    and the reward under the active campaigns, recorded in one transaction.
    Exit 0 when the code is genuine, 1 otherwise."""
    try:
        config = load_config(config_file, data_dir=data)
        plugins.configure(config.plugins.allow)
    except ScangateError as exc:
        _fail(str(exc))
    request = rewards.ScanRequest(request_id or uuid.uuid4().hex, code, actor, actor_type, region, lat, lon)
    with _open(data) as dd:
        try:
            d = rewards.decide_scans(dd, [request], config.verdicts)[0]
            if isinstance(d, rewards.RequestRefused):   # a refusal is the request's result, not a raise
                raise d
        except ScangateError as exc:
            _fail(str(exc))
    v = d.verdict.to_json()
    if as_json:
        _emit({"code": code, **d.to_json()})
    else:
        click.echo(f"{code}: {v['verdict']} ({', '.join(v['reasons'])}), request {d.request_id}")
        click.echo(f"  {v['message']['zh-CN']}  {v['message']['en']}")
        if v.get("first_scan"):
            first = v["first_scan"]
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(first["time_ms"] / 1000))
            click.echo(f"  first scanned {when} UTC in {first['region'] or 'unknown region'}; "
                       f"{v['scan_count']} scans")
        for name, ev in v["evidence"].items():
            click.echo(f"  {name}: {json.dumps(ev, ensure_ascii=False)}")
        if d.award is not None:
            a = d.award
            click.echo(f"  reward: {a.prize_id} ({a.kind}, {a.amount_fen} fen, {a.points} points) from "
                       f"{a.campaign_id} by {a.how}, ledger #{a.ledger_seq}")
        elif d.no_reward is not None:
            click.echo(f"  no reward: {d.no_reward.name.lower()} ({d.no_reward.value})")
        click.echo(f"  {d.message['zh-CN']}  {d.message['en']}")
    sys.exit(0 if v["verdict"] == "genuine" else EXIT_NOT_GENUINE)


@cli.group()
def campaign() -> None:
    """Reward campaigns (TOML or JSON files, see docs/campaigns.md)."""


@campaign.command("load")
@data_option
@click.argument("source", type=click.File("r", encoding="utf-8"))
@json_option
def campaign_load(data: Path, source: IO[str], as_json: bool) -> None:
    """Validate and store a campaign; a new one gets a secret and publishes its
    commitment (SHA-256 of the secret); reloading an id keeps budgets and counters.
    Its plugins must be installed entry points or allowed in DIR/scangate.toml
    ([plugins] allow) or SCANGATE_PLUGINS_ALLOW."""
    try:
        plugins.configure(load_config(data_dir=data).plugins.allow)
    except ScangateError as exc:
        _fail(str(exc))
    with _open(data) as dd:
        try:
            rec = rewards.put_campaign(dd, source.read(), source.name)
        except ScangateError as exc:
            _fail(str(exc))
    c = rec["campaign"]
    _emit({"id": c["id"], "revision": rec["revision"], "commitment": rec["commitment"]}) if as_json else \
        click.echo(f"campaign {c['id']} revision {rec['revision']} loaded; commitment {rec['commitment']}")


@campaign.command("list")
@data_option
@json_option
def campaign_list(data: Path, as_json: bool) -> None:
    """List campaigns."""
    with _open(data) as dd:
        for rec in rewards.list_campaigns(dd):
            c = rec["campaign"]
            row = {"id": c["id"], "name": c["name"], "status": c["status"], "start": c["start"], "end": c["end"],
                   "actor": c["actor"], "revision": rec["revision"]}
            _emit(row) if as_json else click.echo(
                f"{c['id']}\t{c['status']}\t{c['actor']}\t{c['start']} .. {c['end']}\t{c['name']}")


@campaign.command("show")
@data_option
@click.argument("campaign_id")
def campaign_show(data: Path, campaign_id: str) -> None:
    """Show a campaign as stored (JSON), with its commitment and budgets used."""
    with _open(data) as dd:
        try:
            rec = rewards.get_campaign(dd, campaign_id)
        except ScangateError as exc:
            _fail(str(exc))
        rec["budgets_used"] = rewards.budgets_used(dd, campaign_id)
    click.echo(json.dumps(rec, ensure_ascii=False, indent=1))


@campaign.command("pause")
@data_option
@click.argument("campaign_id")
@click.option("--resume", is_flag=True, help="Make it active again.")
def campaign_pause(data: Path, campaign_id: str, resume: bool) -> None:
    """Pause a campaign (scans win nothing, reason RW-N2), or resume it."""
    with _open(data) as dd:
        try:
            rewards.set_campaign_status(dd, campaign_id, "active" if resume else "paused")
        except ScangateError as exc:
            _fail(str(exc))
    click.echo(f"campaign {campaign_id} {'active' if resume else 'paused'}")


@campaign.command("reveal")
@data_option
@click.argument("campaign_id")
@json_option
def campaign_reveal(data: Path, campaign_id: str, as_json: bool) -> None:
    """Publish a campaign's secret once its window has ended (before: refused,
    exit 2), so that anyone can check its draws against the commitment published
    when it was loaded (docs/campaigns.md, "Verifying draws"). The campaign is
    closed from then on: no scan can win it, and it cannot be reloaded."""
    with _open(data) as dd:
        try:
            rec = rewards.reveal_secret(dd, campaign_id)
        except ScangateError as exc:
            _fail(str(exc))
    if as_json:
        _emit(rec)
    else:
        click.echo(f"secret {rec['secret']}\ncommitment {rec['commitment']}")
        click.echo(f"campaign {campaign_id} ended {rec['end']} ({rec['timezone']}); its secret "
                   f"{'matches' if rec['matches_commitment'] else 'DOES NOT MATCH'} its commitment", err=True)


@campaign.command("ledger")
@data_option
@click.argument("campaign_id")
def campaign_ledger(data: Path, campaign_id: str) -> None:
    """Print a campaign's reward ledger entries, one JSON object per line, as
    stored: with the revealed secret, what the verifier in docs/campaigns.md
    checks."""
    from ..audit import export_ledger

    count = 0
    with _open(data) as dd:
        try:
            rewards.get_campaign(dd, campaign_id)
        except ScangateError as exc:
            _fail(str(exc))
        out = sys.stdout.buffer
        for raw in export_ledger(dd, campaign_id):
            out.write(raw + b"\n")
            count += 1
        out.flush()
    click.echo(f"{count:,} ledger entries of campaign {campaign_id}", err=True)


@cli.command()
@data_option
@click.argument("seqs", type=click.IntRange(min=1), nargs=-1)
@click.option("--all", "audit_all", is_flag=True, help="Every ledger entry; text output names the failures only.")
@click.option("--campaign", "campaign_id", default=None, help="With --all: only this campaign's entries.")
@json_option
def audit(data: Path, seqs: tuple[int, ...], audit_all: bool, campaign_id: str | None, as_json: bool) -> None:
    """Recompute reward decisions from the ledger (entries SEQ..., or --all): each
    draw's HMAC from the campaign secret (checked against its published
    commitment), the odds of its time slot under the campaign revision it names,
    the counters and budgets it read (from the entries before it), the prize,
    amount, points and payout key. Prints the fields that disagree; exit 1 if any
    entry fails."""
    from ..audit import audit_entry, audit_ledger

    if bool(seqs) == audit_all:
        _fail("give ledger entry numbers (SEQ...) or --all")
    if campaign_id is not None and not audit_all:
        _fail("--campaign goes with --all")
    ok, count, failures = True, 0, 0
    with _open(data) as dd:
        try:
            results = audit_ledger(dd, campaign_id=campaign_id) if audit_all else (audit_entry(dd, s) for s in seqs)
            for entry in results:
                count += 1
                failures += not entry["verified"]
                ok &= entry["verified"]
                if as_json:
                    _emit(entry)
                elif not entry["verified"] or not audit_all:
                    failed = ", ".join(f"{k} (expected {json.dumps(entry['expected'][k], ensure_ascii=False)})"
                                       if entry["expected"].get(k) is not None else k for k in entry["failed"])
                    e = entry.get     # an edited entry may lack any field
                    click.echo(f"#{e('audited_seq')} {e('campaign_id')} {e('how')} roll {e('roll')} / odds "
                               f"{e('odds_ppm')} ppm -> {e('prize_id') or e('no_reward')}: "
                               f"{'verified' if not failed else 'FAILED ' + failed}")
        except ScangateError as exc:
            _fail(str(exc))
    if audit_all and not as_json:
        click.echo(f"{count:,} ledger entries audited, {failures:,} failed")
    sys.exit(0 if ok else EXIT_NOT_GENUINE)


@cli.group()
def points() -> None:
    """Points: balances and history, redemption, the monthly leaderboard."""


@points.command("show")
@data_option
@click.argument("actor")
@json_option
def points_show(data: Path, actor: str, as_json: bool) -> None:
    """An actor's balance and recent history."""
    with _open(data) as dd:
        bal, hist = points_mod.balance(dd, actor), points_mod.history(dd, actor)
    if as_json:
        _emit({"actor": actor, "balance": bal, "history": hist})
        return
    click.echo(f"{actor}: {bal:,} points")
    for h in hist[-10:]:
        click.echo(f"  {h['delta']:+,} ({h['reason']} {h['ref']}) -> {h['balance']:,}")


@points.command("redeem")
@data_option
@click.argument("actor")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--request-id", required=True, help="Idempotency key: a retry spends nothing more.")
@json_option
def points_redeem(data: Path, actor: str, amount: int, request_id: str, as_json: bool) -> None:
    """Spend points; refused (exit 1) when the balance is short: never overdraws."""
    with _open(data) as dd:
        try:
            r = points_mod.redeem(dd, actor, amount, request_id)
        except ScangateError as exc:
            _fail(str(exc))
    _emit(r.to_json()) if as_json else click.echo(
        f"{'redeemed' if r.ok else 'refused (' + str(r.reason) + ')'}: {amount:,} points; balance {r.balance:,}")
    sys.exit(0 if r.ok else EXIT_NOT_GENUINE)


@points.command("leaderboard")
@data_option
@click.option("--period", default=None, help="YYYY-MM (default: this month, Asia/Shanghai).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--actor", default=None, help="Also show this actor's rank.")
@json_option
def points_leaderboard(data: Path, period: str | None, top: int, actor: str | None, as_json: bool) -> None:
    """Actors (stores) ranked by points earned in a month."""
    period = period or points_mod.period_of(clock.now_ms())
    with _open(data) as dd:
        try:
            board = points_mod.leaderboard(dd, period, top, actor)
        except ScangateError as exc:
            _fail(str(exc))
    if as_json:
        _emit(board)
        return
    click.echo(f"leaderboard {period}")
    for row in board["top"]:
        click.echo(f"  {row['rank']:>3}. {row['actor']}  {row['points']:,}")
    if actor is not None:
        mine = board["actor"]
        click.echo(f"  {actor}: rank {mine['rank'] or '-'} of {mine['of']}, {mine['points']:,} points")
