"""Reading a written report back: the data block embedded beside each chart."""

from __future__ import annotations

import json
import re


def embedded(text: str, chart: str) -> dict:
    found = re.search(
        rf'<script type="application/json" id="data-{chart}">(.*?)</script>', text, re.DOTALL
    )
    assert found, chart
    return json.loads(found.group(1))
