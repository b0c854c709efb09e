"""The state layer: the only place that knows the store (LMDB; the decision state on PostgreSQL too).

    store      the LMDB environment and the issuance ledger (lines, ranges)
    layout     every key layout, and the list of databases
    records    every record of the decision state, typed and versioned
    migrate    schema upgrades of a data directory made by an earlier release
    batch      one batch of decisions: reads by keys, Snapshot, Mutations, apply
    campaigns  campaign storage (admin writes), budget reports
    recalls    recall admin writes and reads, RecallIndex
    points     points accounts, months, history, redemptions
    outbox     the payout outbox: scan, lease, renew, finish
    trace      the trace store: links, children, dealers, shipments; upload steps
    ledger     the audit's read snapshot (ledger, secrets, revisions, claims)
    view       one read snapshot of the decision state, LMDB or PostgreSQL (by database name and key)
    pg         the decision state on PostgreSQL: PgStore, PgBatch, PgOutbox
    reads      the read model: ledger, decisions (JSON); counters, budgets, points, scans, shipments (typed)
    raw        the stored bytes of a named database: repair, forensics, tests; not the engine
    failures   which store errors mean "out of room" and which are the store's own

scangate.store re-exports the environment and the issuance ledger's types.
"""
