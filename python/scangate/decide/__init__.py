"""The decision engine: a batch of typed scan requests, the state read for it,
the compiled campaigns and the clock -> decisions and mutations.

Rooms: requests (bounds, identity, refusals), verdicts and places (counterfeit,
clone, diversion), campaign (compiled rules), eligibility, caps, budgets, draw,
points, ledger (the records), engine (the order of it all: ``decide_batch``).
"""
