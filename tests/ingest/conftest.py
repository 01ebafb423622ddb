"""Fixtures of the ingest tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_helpers import Tables


@pytest.fixture
def tables(tmp_path: Path) -> Tables:
    t = Tables(tmp_path)
    t.write(
        "pins",
        "pin_id,text,created_at,embedding\n"
        'p1,red shoes,1364774400,"[1.0, 0.0]"\n'
        'p2,blue shoes,1364860800,"[0.0, 1.0]"\n'
        'p3,green hat,2013-04-03T00:00:00Z,"[0.6, 0.8]"\n'
        '007,leading zeros,,"0.5 0.5"\n',
    )
    t.write(
        "links",
        "pin_id,url,cohesion\n"
        "p1,http://www.shoes.example/red?utm_source=x,0.9\n"
        "p2,https://shoes.example/blue/,\n"
        "p1,https://shoes.example/red#reviews,0.5\n"
        "p3,http://hats.example/green,0.7\n"
        "007,http://shoes.example/blue,1\n",
    )
    t.write("boards", "board_id,pin_id\nb1,p1\nb1,p2\nb2,p3\nb1,p1\n")
    t.write("board_meta", "board_id,text\nb1,Shoes\nb3,Empty board\n")
    t.write(
        "pages",
        "url,title,body,images\n"
        'http://shoes.example/red,Red shoes,Buy red shoes,"[{""url"": ""http://img.example/r.jpg"", ""width"": 640}]"\n'
        "https://www.news.example/story,A story,Only crawled,\n",
    )
    return t
