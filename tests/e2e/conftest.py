"""Fixtures: mock upstreams and one Envoy per test module, on free 127.0.0.1 ports."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mock_upstream import MockUpstream  # noqa: E402
from policies import UPSTREAM_ENV, base_policy  # noqa: E402
from stack import ROOT, AccountingServer, EnvoyStack, clean_dir  # noqa: E402


@pytest.fixture(scope="module")
def upstreams():
    mocks = {name: MockUpstream(name) for name in ("openai", "anthropic", "openrouter")}
    yield mocks
    for mock in mocks.values():
        mock.stop()


def start_stack(request, upstreams, policy, name=None, extra_clusters=None, **options):
    workdir = clean_dir(ROOT / ".run" / "e2e" / (name or request.module.__name__))
    clusters = {n: m.port for n, m in upstreams.items()}
    clusters.update(extra_clusters or {})
    stack = EnvoyStack(workdir, clusters, policy, UPSTREAM_ENV, **options)
    return stack


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, base_policy("v1"))
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def fresh_recordings(upstreams):
    for mock in upstreams.values():
        mock.clear()


def accounting_server(name):
    """A fresh reference accounting server with its own database under .run/e2e/<name>."""
    return AccountingServer(clean_dir(ROOT / ".run" / "e2e" / name))
