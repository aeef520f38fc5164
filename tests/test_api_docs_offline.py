"""``/api/docs`` works offline: the Swagger UI page references only this server's own
assets (from the fastapi-offline package), and every one of them is served."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from race.api import create_api
from race.bootstrap import bootstrap

URLS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*['"]([^'"]+)['"]""")


@pytest.fixture
def client(sqlite_url, clock):
    application = bootstrap(overrides={"RACE_DATABASE_URL": sqlite_url}, clock=clock)
    try:
        yield TestClient(create_api(application))
    finally:
        application.close()


def test_the_docs_page_references_only_local_assets_and_they_are_served(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "cdn" not in html.lower() and "https://" not in html and "http://" not in html
    urls = {a or b for a, b in URLS.findall(html)}
    scripts = {u for u in urls if u.endswith(".js")}
    styles = {u for u in urls if u.endswith(".css")}
    assert scripts and styles, urls
    assert "/api/openapi.json" in urls
    for url in sorted(urls):
        assert url.startswith("/api/"), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 100, url
    bundle = client.get(next(iter(scripts)))
    assert "javascript" in bundle.headers["content-type"]
    assert b"SwaggerUIBundle" in bundle.content
    assert "text/css" in client.get(next(iter(styles))).headers["content-type"]


def test_the_docs_assets_are_not_part_of_the_api_schema(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/api/docs")]
    assert client.get("/api/docs/static/no-such-file.js").status_code == 404
