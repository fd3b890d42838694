"""Parameter vectors: numeric values, the learnt schema, the gap since the session's last entry."""

import math
from datetime import datetime, timezone

import numpy as np

from client.formats import builtin
from client.param_vectors import GAP, ParamSchema, SchemaLearner, VectorBuilder, numeric_value
from client.parsing import LogParser

OPENSTACK = builtin("openstack")

API_LINE = (
    b"nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO "
    b"nova.osapi_compute.wsgi.server [req-38101a0b-2096-447d-96ea-a692162415ae 113d3a99 "
    b'54fadb41 - - -] 10.11.10.1 "GET /v2/54fadb41/servers/detail HTTP/1.1" status: 200 '
    b"len: 1893 time: 0.2477829"
)


def test_numbers_are_read_through_punctuation_and_identifiers_are_not():
    assert numeric_value("0.2477829") == 0.2477829
    assert numeric_value("1893,") == 1893.0
    assert numeric_value("10.11.10.1") is None
    assert numeric_value("blk_-123") is None
    assert numeric_value("nan") is None


def test_an_openstack_api_line_gives_status_len_and_time():
    parsed = LogParser(OPENSTACK).parse(API_LINE, 1)
    assert parsed.template == '<*> "GET <*> HTTP/<*>" status: <*> len: <*> time: <*>'
    assert [numeric_value(p) for p in parsed.params][3:] == [200.0, 1893.0, 0.2477829]
    assert OPENSTACK.sessions(parsed) == ["stream:nova-api:nova.osapi_compute.wsgi.server"]
    expected = datetime(2017, 5, 16, 0, 0, 0, 8000, tzinfo=timezone.utc).timestamp()
    assert OPENSTACK.clock(parsed.header) == expected


def test_the_schema_keeps_measurements_and_constants_and_drops_categories():
    learner = SchemaLearner()
    template = "status: <*> len: <*> time: <*> size <*> host <*>"
    for i in range(20):
        status = "200" if i % 2 else "404"  # two values: a category
        learner.observe(3, template, (status, str(100 + i), f"0.{i + 1}", "4096", f"h{i}"))
    schema = learner.schema(clock_resolution=0.001)
    assert schema.positions[3] == (1, 2, 3)
    assert schema.names[3] == (GAP, "len#1", "time#2", "size#3")
    assert schema.constants == {3: {3: 4096.0}}
    assert ParamSchema.from_json(schema.to_json()) == schema


def test_the_gap_is_log_seconds_since_the_same_sessions_previous_entry():
    schema = ParamSchema({3: (0,)}, {3: (GAP, "time#0")})
    builder = VectorBuilder(schema)
    assert builder.vector(3, ("0.5",), 100.0, "a").tolist() == [0.0, 0.5]
    builder.vector(3, ("0.5",), 103.0, "b")  # another session does not move a's clock
    np.testing.assert_allclose(builder.vector(3, ("0.7",), 110.0, "a"), [math.log1p(10), 0.7])
    assert builder.vector(3, ("oops",), 111.0, "a") is None
    assert builder.not_numeric == 1
    assert builder.vector(9, (), 112.0, "a") is None  # a key without a schema is not checked
