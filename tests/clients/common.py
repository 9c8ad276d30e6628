"""Shared helpers for the client scripts the Rust tests run against a live sluice serve."""
import json
import sys


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def ok(**kw):
    print("OK " + json.dumps(kw, sort_keys=True))
    sys.exit(0)


def expect(cond, msg):
    if not cond:
        fail(msg)
