"""JSON on the hot paths (events in the Redis stream, the mirror's rows): orjson, which encodes a
scan's analysis about 7x faster than the stdlib and decodes it 3x faster.

What orjson refuses goes to the stdlib, which takes it: text with lone surrogates (a pattern given
as bytes that are not UTF-8, kept by Python as surrogates) and integers beyond 64 bits. Either way
the JSON reads back the same; orjson writes non-ASCII characters as UTF-8 rather than \\u escapes.
"""

import json

import orjson


def dumps(obj) -> str:
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError:
        return json.dumps(obj)


def loads(text):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
