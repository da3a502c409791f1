"""A local fake of the Stripe API for the SDK to talk to: list endpoints paged as Stripe pages them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


class FakeStripe(ThreadingHTTPServer):
    """Serves `GET /v1/prices` and `GET /v1/subscriptions` (filtered by `customer`), `PAGE` objects per page,
    following `starting_after` as Stripe does; records each request as (path, query, Authorization)."""

    PAGE = 2

    def __init__(self, prices=(), subscriptions=()):
        super().__init__(("127.0.0.1", 0), FakeStripeHandler)
        self.prices, self.subscriptions, self.requests = list(prices), list(subscriptions), []

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def listed(self, path, query):
        """The objects a list endpoint returns before paging, or None for an unknown path."""
        if path == "/v1/prices":
            return self.prices
        if path == "/v1/subscriptions":
            customer = query.get("customer", [None])[0]
            return [sub for sub in self.subscriptions if customer is None or sub["customer"] == customer]
        return None


class FakeStripeHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.server.requests.append((url.path, query, self.headers.get("Authorization")))
        objects = self.server.listed(url.path, query)
        if objects is None:
            return self._send(404, {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}})
        ids = [obj["id"] for obj in objects]
        start = ids.index(query["starting_after"][0]) + 1 if "starting_after" in query else 0
        page = objects[start : start + FakeStripe.PAGE]
        body = {"object": "list", "url": url.path, "has_more": start + len(page) < len(ids), "data": page}
        return self._send(200, body)

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        """Quiet: tests assert on `requests` instead."""


@pytest.fixture
def fake_stripe():
    """`fake_stripe(prices=[...], subscriptions=[...])` starts a fake on a free local port; stopped after the test."""
    servers = []

    def serve(prices=(), subscriptions=()):
        server = FakeStripe(prices, subscriptions)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
